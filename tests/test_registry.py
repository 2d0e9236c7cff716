import pytest

from transferkit.errors import UnknownNameError
from transferkit.registry import Registry


def test_duplicate_names_raise() -> None:
    registry: Registry[int] = Registry("thing")
    registry.add("a", 1)
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("a", 2)


def test_unknown_name_lists_valid_names_and_closest_match() -> None:
    registry: Registry[int] = Registry("strategy")
    for name in ("linear-probe", "fine-tune", "lora"):
        registry.add(name, 0)
    with pytest.raises(UnknownNameError) as caught:
        registry.get("fine-tuning")
    message = str(caught.value)
    assert "Did you mean 'fine-tune'" in message
    assert "fine-tune, linear-probe, lora" in message
