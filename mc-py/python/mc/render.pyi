"""Type stubs of mc.render."""

from typing import Any, Literal, Mapping, Optional, Sequence, Union, overload

Objects = list[dict[str, Any]]
Assignments = Union[str, Sequence[str], None]

@overload
def install(
    values: Optional[Mapping[str, Any]] = None,
    *,
    ha: bool = False,
    values_yaml: Optional[str] = None,
    set: Assignments = None,
    set_string: Assignments = None,
    output: Literal["objects"] = "objects",
    **chart_values: Any,
) -> Objects:
    """The objects of ``mc multicluster install``, in apply order."""
@overload
def install(
    values: Optional[Mapping[str, Any]] = None,
    *,
    ha: bool = False,
    values_yaml: Optional[str] = None,
    set: Assignments = None,
    set_string: Assignments = None,
    output: Literal["yaml", "json"],
    **chart_values: Any,
) -> str:
    """The manifests of ``mc multicluster install`` as YAML or JSON text."""
@overload
def allow(
    service_accounts: Union[str, Sequence[str]],
    values: Optional[Mapping[str, Any]] = None,
    *,
    values_yaml: Optional[str] = None,
    set: Assignments = None,
    output: Literal["objects"] = "objects",
    **chart_values: Any,
) -> Objects:
    """The objects of ``mc multicluster allow``."""
@overload
def allow(
    service_accounts: Union[str, Sequence[str]],
    values: Optional[Mapping[str, Any]] = None,
    *,
    values_yaml: Optional[str] = None,
    set: Assignments = None,
    output: Literal["yaml", "json"],
    **chart_values: Any,
) -> str:
    """The manifests of ``mc multicluster allow`` as text."""
@overload
def link(
    values: Optional[Mapping[str, Any]] = None,
    *,
    output: Literal["objects"] = "objects",
    **link_values: Any,
) -> Objects:
    """The objects of ``mc multicluster link`` (Secrets, Link, controller)."""
@overload
def link(
    values: Optional[Mapping[str, Any]] = None,
    *,
    output: Literal["yaml", "json"],
    **link_values: Any,
) -> str:
    """The manifests of ``mc multicluster link`` as text."""
def install_defaults() -> dict[str, Any]:
    """The default install values (the chart's values.yaml)."""
def to_yaml(objects: Sequence[Mapping[str, Any]]) -> str:
    """A ``---``-separated YAML stream."""
def to_json(objects: Sequence[Mapping[str, Any]]) -> str:
    """One JSON ``v1/List``."""
