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
