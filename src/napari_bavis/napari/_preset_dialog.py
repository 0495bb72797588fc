"""The widget's "Load checkpoint…" for a released plain state_dict: ask which published model it is.

Why: bare weights carry no card, and guessing the input space gives a silently wrong age
(docs/models.md). The user names the preset once; the weights are imported beside the file
(``<stem>.<preset>.pt``) and that checkpoint, with its full card, is what the widget uses.
"""

from qtpy.QtWidgets import QInputDialog

from ..errors import BavisError
from ..models.presets import PRESETS, import_weights, imported_path, is_plain_state_dict


def ask_preset(parent, path) -> str | None:
    """A preset name chosen by the user for ``path``, or None when cancelled."""
    items = [f"{p.name}: {p.summary}" for p in PRESETS.values()]
    choice, ok = QInputDialog.getItem(
        parent, "Which published model is this?",
        f"{path} holds bare weights without a model card.\nChoose the published model they belong to:",
        items, 0, False,
    )
    return choice.split(":", 1)[0] if ok and choice else None


def checkpoint_for(parent, path, show_error) -> str | None:
    """``path`` itself, or for a plain state_dict the checkpoint imported with the preset the user picks;
    None when the user cancels or the import fails (one line through ``show_error``)."""
    if not is_plain_state_dict(path):
        return str(path)
    preset = ask_preset(parent, path)
    if preset is None:
        return None
    out = imported_path(path, preset)
    try:
        import_weights(path, preset, out)
    except (BavisError, OSError) as err:
        show_error(f"model: {err}")
        return None
    return str(out)
