"""The widgets' notifications, in one place: every widget module calls ``_notify.show_*`` (napari's
own functions), so a test replaces these three names once to collect what a user would see."""

from napari.utils.notifications import show_error, show_info, show_warning

__all__ = ["show_error", "show_info", "show_warning"]
