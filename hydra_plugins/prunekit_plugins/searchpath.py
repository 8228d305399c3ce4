"""Hydra finds a plug-in's configs: each plug-in package's ``configs`` folder joins the config search path.

Hydra loads every ``SearchPathPlugin`` under the ``hydra_plugins`` namespace (its documented way for a library
to add config folders); this one appends the folders that prunekit's plug-ins ship beside their modules
(:func:`prunekit.registry.plugin_config_dirs`), after prunekit's own configs, so ``method=my_idea`` composes
``configs/method/my_idea.yaml`` from the plug-in and a plug-in cannot shadow a built-in file.
"""
from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class PrunekitPluginConfigs(SearchPathPlugin):
    """Appends every prunekit plug-in's ``configs`` folder to Hydra's search path."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from prunekit.registry import plugin_config_dirs

        for folder in plugin_config_dirs():
            search_path.append(provider="prunekit-plugin", path=f"file://{folder}")
