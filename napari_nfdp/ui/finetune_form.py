"""The fine-tune options of the dock, as a magicgui form, and the job arguments they give."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import Container, SpinBox

MAX_EPOCHS = 500


def make_finetune_form() -> Container:
    """The form: ``epochs`` (0: automatic, about 60 optimisation steps in all)."""
    epochs = SpinBox(
        name="epochs",
        label="Epochs (0 = auto)",
        value=0,
        min=0,
        max=MAX_EPOCHS,
        tooltip="Passes over the corrected images; 0: about 60 optimisation steps in all",
    )
    form = Container(widgets=[epochs], layout="horizontal", labels=True)
    form.margins = (0, 0, 0, 0)
    return form


def finetune_options(form: Container) -> dict[str, Any]:
    """The fine-tune job's keyword arguments from the form (``epochs`` None: automatic)."""
    return {"epochs": form.epochs.value or None}
