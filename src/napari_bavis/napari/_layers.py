"""Layer helpers shared by the analysis and compare widgets (napari only, no Qt, no analysis).

Result layers copy the scan layer's geometry exactly (scale, translate, axis labels, units and
``metadata["bavis_source"]``) so they overlay the scan in millimetres and the plugin's writer
saves them on the scan file's own grid. They are tagged in ``metadata["bavis_result"]`` with
the widget that made them, which is how a re-run finds and replaces them.
"""

from __future__ import annotations

import numpy as np

from ..errors import BavisError
from .. import methods
from ..io import DISPLAY_AXES, Scan, affine_from_layer_geometry, scan_from_image

#: Perceptual base colormap of the maps (absolute: a colour means the same value at any threshold).
MAP_COLORMAP = "inferno"
MAP_OPACITY = 0.7
#: The GPU samples colormaps from a 1024-entry lookup texture with linear filtering; starting the
#: opaque part this far above the cutoff keeps every value below the cutoff fully transparent.
LUT_MARGIN = 2.0 / 1024.0

def method_title(method: str) -> str:
    """The method's human title, from the core's method table (explain/methods.py)."""
    return methods.title(method)


def map_layer_name(scan_name: str, method: str, model: str | None = None) -> str:
    """``<scan> · <method> · <model>``: a map layer says which scan and which model it belongs to."""
    return f"{scan_name} · {method_title(method)}" + (f" · {model}" if model else "")


def threshold_colormap(cutoff: float, base: str = MAP_COLORMAP):
    """``base`` on [0, 1] with alpha 0 at and below ``cutoff`` (fully transparent) and 1 above it."""
    from napari.utils import Colormap
    from napari.utils.colormaps import ensure_colormap

    cutoff = round(float(np.clip(cutoff, 0.0, 1.0)), 4)
    start = cutoff + LUT_MARGIN
    reference = ensure_colormap(base)
    name = f"bavis {base} > {cutoff:.4f}"
    if start >= 1.0 - 1e-4:
        return Colormap(colors=[[0, 0, 0, 0], [0, 0, 0, 0]], controls=[0.0, 1.0], name=name)
    above = np.linspace(start + 1e-4, 1.0, 32)
    controls = np.concatenate([[0.0, start], above])
    colors = reference.map(controls).astype(np.float32)
    colors[:2, 3] = 0.0
    colors[2:, 3] = 1.0
    return Colormap(colors=colors, controls=controls, name=name, interpolation="linear")


def scan_geometry(layer) -> dict:
    """The geometry a result layer copies from its scan layer, metadata included."""
    if layer.data.ndim != 3 or getattr(layer, "rgb", False) or getattr(layer, "multiscale", False):
        raise BavisError(f"{layer.name}: choose a 3D single-channel image layer (this one is {layer.data.ndim}D)")
    labels = tuple(str(a) for a in layer.axis_labels)
    units = tuple(str(u) for u in layer.units)
    source = (layer.metadata or {}).get("bavis_source")
    if source is None:
        source = scan_of_layer(layer).layer_metadata()["bavis_source"]
    return {
        "scale": tuple(float(s) for s in layer.scale),
        "translate": tuple(float(t) for t in layer.translate),
        "axis_labels": labels,
        "units": units,
        "metadata": {"bavis_source": source},
    }


def scan_of_layer(layer) -> Scan:
    """The Scan a layer shows: exact when it came from the plugin's reader, else from its geometry."""
    data = layer.data
    if data.ndim != 3 or getattr(layer, "rgb", False) or getattr(layer, "multiscale", False):
        raise BavisError(f"{layer.name}: choose a 3D single-channel image layer (this one is {data.ndim}D)")
    source = (layer.metadata or {}).get("bavis_source")
    if source is not None and tuple(source["display_shape"]) == tuple(data.shape):
        return Scan(
            data=np.asarray(data, dtype=np.float32),
            display_affine=np.asarray(source["display_affine"], float),
            source_affine=np.asarray(source["source_affine"], float),
            source_shape=tuple(source["source_shape"]),
            header=source.get("header"),
            path=source.get("path"),
            oblique_deg=float(source.get("oblique_deg", 0.0)),
            label=layer.name,
        )
    import nibabel as nib

    labels = tuple(layer.axis_labels)
    affine = affine_from_layer_geometry(layer.scale, layer.translate, labels)
    scan = scan_from_image(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine))
    scan.label = layer.name
    return scan


def result_metadata(geometry: dict, tag: str, role: str, **extra) -> dict:
    return {**geometry["metadata"], "bavis_result": tag, "bavis_role": role, **extra}


def _placed_like_scan(geometry: dict, name: str, metadata: dict) -> dict:
    """Layer kwargs that put a result exactly on its scan: same transform, the scan's source metadata."""
    return {
        "name": name,
        "scale": geometry["scale"],
        "translate": geometry["translate"],
        "axis_labels": geometry["axis_labels"],
        "units": geometry["units"],
        "metadata": metadata,
    }


def map_layer_kwargs(geometry: dict, name: str, cutoff: float, tag: str, method: str) -> dict:
    return {
        **_placed_like_scan(geometry, name, result_metadata(geometry, tag, "map", bavis_method=method)),
        "colormap": threshold_colormap(cutoff),
        "contrast_limits": (0.0, 1.0),
        "blending": "translucent",
        "opacity": MAP_OPACITY,
        "interpolation2d": "nearest",
    }


def regions_layer_kwargs(geometry: dict, name: str, tag: str) -> dict:
    return {
        **_placed_like_scan(geometry, name, result_metadata(geometry, tag, "regions")),
        "opacity": 0.5,
        "visible": False,  # the maps carry the colour; shown on demand (and when a row is clicked)
    }


#: What "Check registration" shows: one grey checkerboard of the registered scan and the template.
REGISTRATION_CHECK = "registration check"
#: The brain mask is drawn as its outline (voxels wide) in one colour over the scan, not as a fill.
MASK_CONTOUR = 1
MASK_COLOR = "#00e5ff"


def qc_layer_data(qc: dict, scan_name: str, tag: str, keys=None) -> dict:
    """QC layers as (data, kwargs, layer type), in RAS millimetres, keyed by QC name:

    - "brain mask" (on the scan's display grid): a Labels layer in one colour, drawn as an outline by
      the widget (``MASK_CONTOUR``), so the scan under it stays readable;
    - ``REGISTRATION_CHECK`` (on the model grid): a grey checkerboard of the registered scan and the
      template, each scaled to [0, 1] (``qc_view.registration_checkerboard``): edges that run on
      across tile borders mean the registration worked.

    ``keys`` limits the work to those layers (the checkerboard costs a few hundred ms at 1 mm).
    """
    from ..qc_view import registration_checkerboard

    images = {}
    if "brain mask" in qc:
        images["brain mask"] = qc["brain mask"]
    if "registered scan" in qc and "template" in qc:
        images[REGISTRATION_CHECK] = None  # made on demand below
    out = {}
    for key in images:
        if keys is not None and key not in keys:
            continue
        image = images[key]
        if key == REGISTRATION_CHECK:
            image = registration_checkerboard(qc["registered scan"], qc["template"])
        try:
            scan = scan_from_image(image)
        except BavisError:
            continue  # e.g. an empty mask: nothing worth showing
        kwargs = scan.layer_kwargs()
        kwargs["metadata"] = {**kwargs["metadata"], "bavis_result": tag, "bavis_role": "qc", "bavis_qc": key}
        if key == "brain mask":
            from napari.utils.colormaps import DirectLabelColormap

            kwargs["name"] = f"{scan_name} · brain mask (outline)"
            colormap = DirectLabelColormap(color_dict={None: [0, 0, 0, 0], 0: [0, 0, 0, 0], 1: MASK_COLOR})
            out[key] = ((scan.data > 0.5).astype(np.uint8), {**kwargs, "opacity": 1.0, "colormap": colormap}, "labels")
        else:
            kwargs["name"] = f"{scan_name} · registration check"
            out[key] = (scan.data, {**kwargs, "colormap": "gray", "blending": "translucent", "opacity": 1.0,
                                    "contrast_limits": (0.0, 1.0)}, "image")
    return out


def put_layer(viewer, data, kwargs: dict, layer_type: str = "image"):
    """Add a layer, or update the same-named layer of the same type in place.

    Updating in place keeps the layer's position and costs milliseconds; creating a layer costs
    napari ~100 ms of GUI-thread time (its visuals and controls), so re-runs reuse layers. A new
    layer does not become the active one (napari would switch the layer controls and repaint in
    the same call, tens of ms more; the user's selection stays).
    """
    cls = _layer_class(layer_type)
    name = kwargs["name"]
    if name in viewer.layers:
        layer = viewer.layers[name]
        if isinstance(layer, cls) and getattr(layer, "rgb", False) is False and np.ndim(data) == layer.ndim:
            _update_in_place(layer, data, kwargs)
            return layer
        viewer.layers.remove(name)
    return add_quietly(viewer, cls(data, **kwargs))


def _layer_class(layer_type: str):
    from napari.layers import Image, Labels

    return Labels if layer_type == "labels" else Image


def new_layer(data, kwargs: dict, layer_type: str = "image"):
    """The layer object alone (a few ms: no visuals yet); ``add_quietly`` puts it in the viewer."""
    return _layer_class(layer_type)(data, **kwargs)


def add_quietly(viewer, layer):
    """``viewer.add_layer`` without making the layer the active one (see put_layer)."""
    layers = getattr(viewer.layers, "__wrapped__", viewer.layers)  # a plugin's viewer is a public-only proxy
    before = getattr(layers, "_activate_on_insert", None)
    if before is not None:
        layers._activate_on_insert = False
    try:
        viewer.add_layer(layer)
    finally:
        if before is not None:
            layers._activate_on_insert = before
    return layer


def _same_value(old, new) -> bool:
    try:
        if isinstance(new, (tuple, list, np.ndarray)):
            return np.shape(old) == np.shape(new) and bool(np.all(np.asarray(old) == np.asarray(new)))
        return old == new
    except Exception:  # values napari cannot compare: set them
        return False


def _update_in_place(layer, data, kwargs: dict) -> None:
    """Only what differs is set: each setter makes napari refresh the layer (tens of ms for the
    geometry), and a re-run of the same scan changes only the data and the colormap."""
    kwargs = dict(kwargs)
    kwargs.pop("name")
    kwargs.pop("visible", None)  # keep what the user chose
    layer.metadata = kwargs.pop("metadata", {})
    for key in ("scale", "translate"):
        if key in kwargs:
            value = kwargs.pop(key)
            if not np.allclose(np.asarray(getattr(layer, key), float), np.asarray(value, float)):
                setattr(layer, key, value)
    for key in ("axis_labels", "units"):
        if key in kwargs:
            value = kwargs.pop(key)
            if tuple(str(v) for v in getattr(layer, key)) != tuple(str(v) for v in value):
                setattr(layer, key, value)
    limits = kwargs.pop("contrast_limits", None)
    layer.data = data
    if limits is not None:
        if not _same_value(tuple(layer.contrast_limits_range), tuple(limits)):
            layer.contrast_limits_range = limits
        if not _same_value(tuple(layer.contrast_limits), tuple(limits)):
            layer.contrast_limits = limits
    colormap = kwargs.pop("colormap", None)
    if colormap is not None and getattr(getattr(layer, "colormap", None), "name", None) != getattr(colormap, "name", colormap):
        layer.colormap = colormap
    for key, value in kwargs.items():
        current = getattr(layer, key, None)
        if not _same_value(str(current) if hasattr(current, "value") else current,
                           str(value) if hasattr(value, "value") else value):
            setattr(layer, key, value)


def result_layers(viewer, tag: str, role: str | None = None) -> list:
    return [
        layer for layer in viewer.layers
        if (layer.metadata or {}).get("bavis_result") == tag
        and (role is None or layer.metadata.get("bavis_role") == role)
    ]


def remove_result_layers(viewer, tag: str, role: str | None = None) -> int:
    layers = result_layers(viewer, tag, role)
    for layer in layers:
        viewer.layers.remove(layer)
    return len(layers)


def is_result_layer(layer) -> bool:
    return "bavis_result" in (layer.metadata or {})


def ras_to_world(ras_mm) -> tuple[float, float, float]:
    """Scanner RAS (x, y, z) mm -> napari world coordinates, which run along (S, A, R)."""
    x, y, z = (float(v) for v in ras_mm)
    assert DISPLAY_AXES == ("S", "A", "R")
    return (z, y, x)
