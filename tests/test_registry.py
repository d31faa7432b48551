import pytest

from dece.registry import Registry


def test_register_and_get_returns_the_registered_object():
    reg: Registry[type] = Registry("widget")

    @reg.register("a")
    class A: ...

    assert reg.get("a") is A
    assert "a" in reg and reg.names() == ["a"] and len(reg) == 1


def test_unknown_name_lists_allowed_names():
    reg: Registry[int] = Registry("widget")
    reg.register("x")(1)
    reg.register("y")(2)
    with pytest.raises(ValueError, match=r"unknown widget 'z'; allowed: x, y"):
        reg.get("z")


def test_duplicate_registration_is_rejected():
    reg: Registry[int] = Registry("widget")
    reg.register("x")(1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("x")(2)


def test_build_passes_parameters_and_names_unknown_ones_before_calling():
    reg: Registry[type] = Registry("widget")
    calls = []

    @reg.register("a")
    class A:
        def __init__(self, size: int = 1, name: str = "") -> None:
            calls.append((size, name))

    assert isinstance(reg.build("a", size=3, name="n"), A) and calls == [(3, "n")]
    with pytest.raises(ValueError, match=r"widget 'a': unknown parameter\(s\) colour, k; "
                       r"allowed: name, size"):  # fmt: skip
        reg.build("a", colour="red", k=2, size=2)
    assert calls == [(3, "n")]  # the failing build never called A
