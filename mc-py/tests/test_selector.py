"""mc.Selector: parse, matches, str, LabelSelector dicts."""

import pytest

import mc


def test_parse_matches_and_prints():
    s = mc.Selector.parse("app=web,tier in (a,b),!legacy,env notin (dev),owner")
    assert s.matches({"app": "web", "tier": "a", "owner": "x"})
    assert s.matches({"app": "web", "tier": "b", "owner": "x", "env": "prod"})
    assert not s.matches({"app": "web", "tier": "c", "owner": "x"})
    assert not s.matches({"app": "web", "tier": "a", "owner": "x", "legacy": "1"})
    assert not s.matches({"app": "web", "tier": "a", "owner": "x", "env": "dev"})
    assert not s.matches({"app": "web", "tier": "a"})  # owner must exist
    assert str(s) == "app=web,tier in (a,b),env notin (dev),!legacy,owner" or mc.Selector(str(s)) == s
    assert mc.Selector(str(s)) == s
    assert repr(s).startswith("Selector('app=web")


def test_string_form_round_trips():
    for text in ["a=b", "a!=b", "k in (x,y,z)", "!gone", "present", "mirror.linkerd.io/exported=true"]:
        s = mc.Selector.parse(text)
        assert mc.Selector.parse(str(s)) == s
        assert hash(mc.Selector.parse(str(s))) == hash(s)


def test_empty_selector_matches_nothing():
    empty = mc.Selector()
    assert empty.is_empty() and str(empty) == ""
    assert not empty.matches({})
    assert not empty.matches({"anything": "at all"})
    assert empty.to_query() == "mirror.linkerd.io/exported,!mirror.linkerd.io/exported"
    assert mc.Selector("a=b").to_query() == "a=b"


def test_label_selector_dicts():
    ls = {
        "matchLabels": {"mirror.linkerd.io/exported": "true"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}],
    }
    s = mc.Selector.from_label_selector(ls)
    assert s == mc.Selector("mirror.linkerd.io/exported=true,tier in (a,b)")
    out = s.to_label_selector()
    assert out["matchLabels"] == {"mirror.linkerd.io/exported": "true"}
    assert out["matchExpressions"] == [{"key": "tier", "operator": "In", "values": ["a", "b"]}]
    assert mc.Selector.from_label_selector(out) == s
    assert mc.Selector().to_label_selector() == {}


def test_parse_errors():
    with pytest.raises(mc.SelectorError, match="stray comma") as info:
        mc.Selector.parse("a=b,,c=d")
    assert info.value.field is None
    assert "fix:" in str(info.value)
    with pytest.raises(mc.SelectorError):
        mc.Selector.parse("k in (a,b")
    with pytest.raises(mc.SelectorError):
        mc.Selector.parse("bad key!=x")
    with pytest.raises(mc.SelectorError):
        mc.Selector.parse("k=" + "v" * 64)


def test_label_selector_errors_name_the_field():
    with pytest.raises(mc.SelectorError) as info:
        mc.Selector.from_label_selector(
            {"matchExpressions": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Like"}]}
        )
    assert info.value.field == "matchExpressions[1].operator"
    with pytest.raises(mc.SelectorError) as info:
        mc.Selector.from_label_selector({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})
    assert "at least one value" in str(info.value)
    with pytest.raises(mc.KindError):
        mc.Selector.from_label_selector({"matchLabels": ["not", "a", "map"]})


def test_matches_requires_string_labels():
    with pytest.raises(TypeError):
        mc.Selector("a=b").matches({"a": 1})
