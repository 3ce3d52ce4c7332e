"""Landmark features and styles, Cobb lines (no viewer needed)."""

from __future__ import annotations

import numpy as np
from napari.layers import Image

from napari_nfdp.core.cobb import cobb_angles
from napari_nfdp.core.schema import SPINE_LANDMARK_NAMES, generic_landmark_names
from napari_nfdp.simulator import synthesize_spine
from napari_nfdp.ui.layers import (
    REVIEW_BORDER,
    cobb_lines,
    landmark_features,
    make_cobb_layer,
    make_points_layer,
    point_style,
    show_cobb,
    split_name,
    vertebra_colours,
)

K = len(SPINE_LANDMARK_NAMES)


def test_split_name():
    assert split_name("T5-top-left") == ("T5", "top-left")
    assert split_name("L5-bottom-right") == ("L5", "bottom-right")
    assert split_name("P07") == ("P07", "")


def test_features_and_review_flags():
    sigma = np.full((K, 2), 2.0)
    sigma[7] = 20.0  # far above the median
    sigma[8] = 20.0  # as uncertain, but a person already moved it
    source = ["model"] * K
    source[8] = "human"
    features = landmark_features(SPINE_LANDMARK_NAMES, source, np.ones(K, bool), sigma)
    assert list(features["vertebra"][:5]) == ["T1"] * 4 + ["T2"]
    assert list(features["corner"][:4]) == ["top-left", "top-right", "bottom-left", "bottom-right"]
    assert np.flatnonzero(features["review"]).tolist() == [7]
    assert features["sigma"].iloc[7] == 20.0
    labels = [label for label in features["label"] if label]
    assert labels == ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12",
                      "L1", "L2", "L3", "L4", "L5"]  # fmt: skip
    style = point_style(features)
    np.testing.assert_array_equal(style["border_color"][7], REVIEW_BORDER)
    assert style["border_width"][7] > style["border_width"][8] > style["border_width"][0]


def test_the_models_own_review_flags_are_shown_on_model_points():
    sigma = np.full((K, 2), 2.0)  # nothing stands out within the film
    model_review = np.zeros(K, bool)
    model_review[[3, 4]] = True  # but the model says these are far above its usual
    source = ["model"] * K
    source[4] = "human"  # a person already moved this one
    features = landmark_features(
        SPINE_LANDMARK_NAMES, source, np.ones(K, bool), sigma, model_review=model_review
    )
    assert list(np.flatnonzero(features["review"])) == [3]


def test_hidden_points_and_generic_schema():
    names = generic_landmark_names(5)
    visible = np.array([True, True, False, True, True])
    features = landmark_features(names, ["model"] * 5, visible, None)
    assert features["sigma"].isna().all() and not features["review"].any()
    assert list(features["label"]) == list(names)
    style = point_style(features)
    assert style["symbol"][2] == "x" and style["face_color"][2, 3] < 1


def test_neighbouring_vertebrae_have_distinct_colours():
    groups = [split_name(n)[0] for n in SPINE_LANDMARK_NAMES]
    colours = vertebra_colours(groups)
    per_vertebra = colours[::4, :3]
    assert np.all(np.abs(np.diff(per_vertebra, axis=0)).sum(axis=1) > 0.3)
    np.testing.assert_array_equal(colours[0], colours[3])


def test_cobb_lines_and_layer():
    case = synthesize_spine(7, shape=(512, 256), curve="S", max_cobb=40)
    result = cobb_angles(case.landmarks, 512)
    lines, labels, curves = cobb_lines(result)
    assert len(lines) == 6 and curves == ["PT", "PT", "MT", "MT", "TL", "TL"]
    assert labels[2] == f"MT {result.mt:.0f}°" and labels[3] == ""
    upper = result.curve("MT").lines[0]
    line_length = np.linalg.norm(lines[2][1] - lines[2][0])
    assert line_length > 2 * np.linalg.norm(upper[1] - upper[0])  # extended
    np.testing.assert_allclose(lines[2].mean(axis=0), upper.mean(axis=0))

    image = Image(case.image, scale=(0.2, 0.2))
    layer = make_cobb_layer(image)
    show_cobb(layer, result)
    assert layer.nshapes == 6 and list(layer.scale) == [0.2, 0.2]
    moved = case.landmarks.copy()
    moved[4 * result.curve("MT").upper] += (10, 0)
    show_cobb(layer, cobb_angles(moved, 512))  # fast path: vertices edited in place
    assert layer.nshapes == 6 and not np.allclose(layer.data[2], lines[2])
    show_cobb(layer, None)
    assert layer.nshapes == 0


def test_points_layer_follows_the_image():
    case = synthesize_spine(3, shape=(256, 128))
    image = Image(case.image, scale=(0.5, 0.5), translate=(3, 4), name="film")
    features = landmark_features(SPINE_LANDMARK_NAMES, ["model"] * K, np.ones(K, bool), None)
    layer = make_points_layer(image, case.landmarks, features, labels=True)
    assert layer.name == "film landmarks" and layer.text.visible
    assert list(layer.scale) == [0.5, 0.5] and list(layer.translate) == [3, 4]
    np.testing.assert_array_equal(layer.data, case.landmarks)
