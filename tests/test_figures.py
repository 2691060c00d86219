"""Drawing checks of the CAM and GSE figures: colour bars, error bars, tick names, legend placement.

Each figure is drawn from small synthetic arrays; the checks read the matplotlib artists back.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from umcam_lib.cam import figures as cam_figures
from umcam_lib.gse import figures as gse_figures
from umcam_lib.gse.pseudo_labels import explain

H = W = 32


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _slices(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:H, :W]
    masks = np.stack([((yy - 16) ** 2 + (xx - 15 - i) ** 2 < (6 + i) ** 2) for i in range(k)]).astype(np.float32)
    rng = np.random.default_rng(0)
    images = np.clip(0.3 + 0.5 * masks + 0.05 * rng.standard_normal(masks.shape), 0, 1).astype(np.float32)
    cams = np.clip(masks * 0.8 + 0.2 * rng.random(masks.shape), 0, 1).astype(np.float32)
    return images, masks, cams


def _colorbar_labels(fig) -> list[str]:
    """Labels of every colour bar of ``fig``, inset bars (children of a panel) included."""
    every = [a for ax in fig.axes for a in (ax, *ax.child_axes)]
    return [ax.get_ylabel() or ax.get_xlabel() for ax in every if hasattr(ax, "_colorbar")]


def _panel_sizes(axes) -> set[tuple[float, float]]:
    return {(round(a.get_position().width, 4), round(a.get_position().height, 4)) for a in np.ravel(axes)}


def test_cam_grid_has_one_labelled_colour_bar_and_equal_panels():
    images, masks, cams = _slices(2)
    fig = cam_figures.plot_cam_grid(images, masks, {"Grad-CAM": cams, "UM-CAM": cams[::-1]}, thresholds={"UM-CAM": 0.5})
    assert _colorbar_labels(fig) == [cam_figures.CAM_LABEL]
    panels = [a for a in fig.axes if not hasattr(a, "_colorbar")]
    assert len(panels) == 2 * 3
    assert len(_panel_sizes(panels)) == 1  # the bar has its own axes: no panel is narrowed
    bar = next(a for a in fig.axes if hasattr(a, "_colorbar")).get_position()
    assert bar.x0 > max(a.get_position().x1 for a in panels)


def test_entropy_weights_has_cam_and_weight_colour_bars():
    images, masks, cams = _slices(2)
    layer_maps = np.stack([cams, cams ** 2, np.sqrt(cams)])
    fig = cam_figures.plot_entropy_weights(images, masks, layer_maps, ["b1", "b2", "b3"], cams)
    labels = _colorbar_labels(fig)
    assert cam_figures.CAM_LABEL in labels
    assert any("entropy weight" in lab for lab in labels)
    assert len(labels) == 2


def _summary() -> pd.DataFrame:
    return pd.DataFrame({
        "layer": ["block1", "block2", "average_cam", "umcam", "all_foreground"],
        "dsc_mean": [5.0, 95.0, 60.0, 70.0, 6.0], "dsc_sd": [11.0, 9.0, 1.0, np.nan, 0.0],
        "pointing_mean": [0.04, 0.8, 0.95, 0.5, np.nan], "pointing_sd": [0.1, 0.3, 0.2, 0.0, np.nan],
        "n_seeds": [3, 3, 3, 3, 3]})


def _whiskers(ax) -> list[np.ndarray]:
    """The vertical segment ``[[x, low], [x, high]]`` of each error bar of ``ax``."""
    from matplotlib.container import ErrorbarContainer

    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    return bars.lines[2][0].get_segments()


def test_layer_localisation_error_bars_stay_in_range_and_ticks_are_display_names():
    fig = cam_figures.plot_layer_localisation(_summary())
    ax_dsc, ax_pg = fig.axes
    for ax, top in ((ax_dsc, 100.0), (ax_pg, 1.0)):
        segments = _whiskers(ax)
        ys = np.concatenate([s[:, 1] for s in segments])
        assert ys.min() >= 0.0 and ys.max() <= top + 1e-9
        assert ax.get_ylim() == (0.0, top)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["block1", "block2", "Average-CAM", "UM-CAM"]
    # whiskers that fit are one SD each way: block2's pointing game 0.8 +- 0.3 -> [0.5, 1.0]
    seg = _whiskers(ax_pg)[1]
    assert sorted(seg[:, 1]) == pytest.approx([0.5, 1.0])
    seg = _whiskers(ax_dsc)[2]
    assert sorted(seg[:, 1]) == pytest.approx([59.0, 61.0])


def test_layer_localisation_legend_sits_above_the_axes():
    fig = cam_figures.plot_layer_localisation(_summary(), names={"block1": "VGG block 1"})
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert legend is not None
    assert legend.get_window_extent().y0 >= ax.get_window_extent().y1 - 1.0
    assert ax.get_xticklabels()[0].get_text() == "VGG block 1"


def test_spl_examples_maps_have_colour_bars_without_narrowing_panels():
    images, masks, cams = _slices(2)
    examples = [explain(images[i], cams[i], threshold=0.5, margin=2) for i in range(2)]
    fig = gse_figures.plot_spl_examples(examples, images, cams, masks)
    labels = _colorbar_labels(fig)
    assert labels.count(gse_figures.GEODESIC_LABEL) == 2 * 2
    assert len(labels) == 2 * 4
    panels = [a for a in fig.axes if not hasattr(a, "_colorbar")]
    assert len(panels) == 2 * len(gse_figures.COLUMNS)
    assert len(_panel_sizes(panels)) == 1


def test_geodesic_vs_euclidean_labels_both_distance_bars():
    images, masks, _ = _slices(1)
    fig = gse_figures.plot_geodesic_vs_euclidean(images[0], (16, 15), 2, masks[0] > 0)
    labels = _colorbar_labels(fig)
    assert labels == ["distance (pixels)", "geodesic distance (z-scored intensity x px)"]


def test_centroid_offsets_name_a_systematic_shift_and_only_that():
    import pandas as pd
    from types import SimpleNamespace

    from umcam_lib.report import figures as evaluate

    gt = np.zeros((6, 32, 32), bool)
    gt[:, 12:20, 10:18] = True
    s = SimpleNamespace(masks=gt, spacing_mm=2.0)
    rng = np.random.default_rng(0)
    up = np.stack([np.roll(g, -3 + int(rng.integers(-1, 2)), axis=0) for g in gt]).astype(np.float32)
    offsets = evaluate.centroid_offsets(s, {"shifted": (np.arange(6), up), "exact": (np.arange(6), gt.astype(np.float32))})
    row = offsets.set_index("method")
    assert row.loc["shifted", "dy_mm"] < -4 and abs(row.loc["exact", "dy_mm"]) < 1e-9
    text = evaluate.describe_offsets(offsets, 2.0)
    assert "shifted: masks sit" in text and "above the truth" in text and "exact" not in text
    assert "No method" in evaluate.describe_offsets(offsets[offsets["method"] == "exact"], 2.0)
    assert isinstance(offsets, pd.DataFrame) and (offsets["n_slices"] == 6).all()
