"""The manifests of ``mc multicluster install | allow | link``, as a list of dicts or text.

The same renderer as the ``mc`` CLI and the Helm-chart test, so the output is identical.

>>> objects = install(gateway={"enabled": False})
>>> text = link(cluster_name="east", kubeconfig=kubeconfig_text, output="yaml")
"""

from mc._mc import render as _native

install = _native.install
allow = _native.allow
link = _native.link
install_defaults = _native.install_defaults
to_yaml = _native.to_yaml
to_json = _native.to_json

__all__ = ["allow", "install", "install_defaults", "link", "to_json", "to_yaml"]
