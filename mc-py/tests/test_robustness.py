"""No panic crosses into Python: junk input gives mc.Error (or TypeError/ValueError), never
pyo3's PanicException (a BaseException, which these tests would not catch)."""

import random

import pytest

import mc

EXPECTED = (mc.Error, TypeError, ValueError, OverflowError)


def junk_text(rng, alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(n)))


def test_pem_junk(root):
    rng = random.Random(1)
    pem = root.cert_pem
    for _ in range(300):
        # Mutate a real certificate: flip, drop or insert characters.
        chars = list(pem)
        for _ in range(rng.randrange(1, 5)):
            i = rng.randrange(len(chars))
            op = rng.randrange(3)
            if op == 0:
                chars[i] = rng.choice("AZaz09+/=-\n\r *")
            elif op == 1:
                del chars[i]
            else:
                chars.insert(i, rng.choice("AZaz09+/=-\n"))
        try:
            mc.TrustBundle.from_pem("".join(chars))
        except EXPECTED:
            pass
        try:
            mc.TrustBundle.from_pem(bytes(rng.randrange(256) for _ in range(rng.randrange(64))))
        except EXPECTED:
            pass


def test_selector_junk():
    rng = random.Random(2)
    for _ in range(2000):
        text = junk_text(rng, "ab=!,() in notin/.-_ \t", 30)
        try:
            s = mc.Selector.parse(text)
        except EXPECTED:
            continue
        assert mc.Selector.parse(str(s)) == s


def random_value(rng, depth=0):
    choice = rng.randrange(8 if depth < 4 else 5)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 80, 65536, 2**40, 2**63 - 1])
    if choice == 3:
        return rng.choice(["", "x", "4143", "1m", "/ready", "a,b", "None", "TCP", "ünï"])
    if choice == 4:
        return rng.random()
    if choice == 5:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    keys = ["name", "namespace", "port", "ports", "targetPort", "protocol", "labels", "spec",
            "metadata", "clusterIP", "selector", "matchLabels", "gatewayPort", "subsets", "addresses"]
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def random_dict(rng):
    value = random_value(rng, depth=2)
    return value if isinstance(value, dict) else {"spec": value}


@pytest.fixture(scope="module")
def link():
    return mc.Link.from_dict({"spec": {
        "targetClusterName": "east", "gatewayAddress": "203.0.113.10", "gatewayPort": "4143",
        "selector": {"matchLabels": {"mirror.linkerd.io/exported": "true"}},
    }})


def test_object_junk(link):
    rng = random.Random(3)
    for _ in range(1000):
        svc = {"apiVersion": "v1", "kind": "Service", **random_dict(rng)} if rng.random() < 0.8 else random_value(rng)
        eps = rng.choice([None, random_value(rng), {"apiVersion": "v1", "kind": "Endpoints", "subsets": random_value(rng)}])
        try:
            mc.desired_mirror(svc, eps, link, ["203.0.113.10"], rng.random() < 0.5)
        except EXPECTED:
            pass
        try:
            mc.Link.from_dict({"spec": random_value(rng)}).validate()
        except EXPECTED:
            pass


def test_transport_junk():
    rng = random.Random(4)
    for _ in range(3000):
        data = mc.TRANSPORT_PREFACE + bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        try:
            mc.TransportHeader.decode(data)
        except EXPECTED:
            pass


VALID_SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "shop", "labels": {"mirror.linkerd.io/exported": "true"},
                 "annotations": {"a": "b"}, "resourceVersion": "1"},
    "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
             "clusterIP": "198.19.0.1"},
}
VALID_ENDPOINTS = {
    "apiVersion": "v1",
    "kind": "Endpoints",
    "metadata": {"name": "web", "namespace": "shop"},
    "subsets": [{"addresses": [{"ip": "10.0.0.1", "hostname": "web-0"}], "ports": [{"port": 8080}]}],
}


def mutate(rng, obj):
    """A deep copy of obj with one random node replaced by a random value."""
    import copy

    obj = copy.deepcopy(obj)
    node = obj
    while True:
        keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return obj
        key = rng.choice(keys)
        child = node[key]
        if isinstance(child, (dict, list)) and child and rng.random() < 0.7:
            node = child
            continue
        node[key] = random_value(rng)
        return obj


def test_mutated_objects(link):
    rng = random.Random(5)
    computed = 0
    for _ in range(1500):
        svc = mutate(rng, VALID_SERVICE)
        eps = mutate(rng, VALID_ENDPOINTS) if rng.random() < 0.5 else VALID_ENDPOINTS
        try:
            mc.desired_mirror(svc, eps, link, ["203.0.113.10"], rng.random() < 0.5)
            computed += 1
        except EXPECTED:
            pass
    assert computed > 20  # some mutations are still mirrorable: the model really ran on them
