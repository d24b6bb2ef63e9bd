"""The metrics of mangagan_app.ml.metrics, each on point sets whose answer is known."""

import numpy as np
import pytest

from mangagan_app.ml.metrics import (
    METRICS,
    compute_metrics,
    coverage,
    density,
    frechet_distance,
    knn_radii,
    memorisation,
    precision,
    recall,
)


@pytest.fixture(scope="module")
def real():
    return np.random.default_rng(0).normal(size=(400, 8))


def test_registry_names_every_feature_metric_when_imported():
    assert set(METRICS) == {"frechet", "precision", "recall", "density", "coverage"}


def test_compute_metrics_refuses_an_unknown_name_when_asked_for_it(real):
    with pytest.raises(KeyError, match="fid50k"):
        compute_metrics(real, real, ["precision", "fid50k"])


def test_frechet_distance_is_zero_for_the_same_set_and_grows_with_a_shift_when_compared(real):
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(real, real + 1.0) == pytest.approx(8.0, rel=1e-6)


def test_knn_radii_are_the_distance_to_the_kth_other_point_when_points_lie_on_a_line():
    x = np.arange(10, dtype=np.float64)[:, None] ** 2  # 0, 1, 4, 9, ...
    assert knn_radii(x, k=1)[0] == 1.0 and knn_radii(x, k=2)[0] == 4.0
    assert knn_radii(x, k=1)[5] == 9.0  # 25: nearest others 16 (9 away) and 36 (11 away)


def test_prdc_are_all_one_when_the_generated_set_is_the_real_set(real):
    scores = compute_metrics(real, real, ["precision", "recall", "density", "coverage"])
    assert scores["precision"] == 1.0 and scores["recall"] == 1.0 and scores["coverage"] == 1.0
    assert scores["density"] == pytest.approx(1.0, abs=0.02)


def test_prdc_are_all_zero_when_the_generated_set_lies_far_away(real):
    far = real + 100.0
    assert precision(real, far) == 0.0
    assert recall(real, far) == 0.0
    assert density(real, far) == 0.0
    assert coverage(real, far) == 0.0


def test_collapse_onto_one_real_face_keeps_precision_and_loses_recall_and_coverage_when_generated(real):
    collapsed = np.repeat(real[:1], 200, axis=0)
    assert precision(real, collapsed) == 1.0
    assert recall(real, collapsed) == 0.0  # every fake ball has radius 0
    assert coverage(real, collapsed) < 0.05  # only the few real balls reaching that one face
    assert density(real, collapsed) < 0.05 * 200  # dense around one face, not across the set


def test_density_exceeds_one_when_fakes_crowd_the_dense_centre(real):
    centre = real[np.linalg.norm(real, axis=1) < np.quantile(np.linalg.norm(real, axis=1), 0.25)]
    crowded = centre[np.random.default_rng(1).integers(len(centre), size=400)] + 0.01
    assert density(real, crowded) > 1.5


def test_floor_of_two_halves_of_one_distribution_is_near_the_papers_values_when_measured():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(1000, 16)), rng.normal(size=(1000, 16))
    scores = compute_metrics(a, b)
    assert scores["precision"] > 0.8 and scores["recall"] > 0.8
    assert 0.8 < scores["density"] < 1.2
    # Naeem et al.: for two samples of one distribution, coverage is 1 - 2^-k ≈ 0.969 for k = 5.
    assert scores["coverage"] == pytest.approx(0.969, abs=0.02)


def test_prdc_refuse_sets_of_different_widths_or_too_few_faces_when_given(real):
    with pytest.raises(ValueError, match="feature sets"):
        precision(real, real[:, :4])
    with pytest.raises(ValueError, match="more than 5 faces"):
        coverage(real, real[:5])


def test_memorisation_counts_faces_nearer_than_99_percent_of_unseen_ones_in_every_space_when_given():
    unseen = np.linspace(1.0, 2.0, 1001)  # 1 % of unseen faces are nearer than 1.01
    generated = np.array([0.5, 0.5, 1.5, 1.5])
    assert memorisation([generated], [unseen]) == 0.5
    other_space = np.array([0.5, 1.5, 0.5, 1.5])
    assert memorisation([generated, other_space], [unseen, unseen]) == 0.25


def test_memorisation_refuses_when_no_unseen_faces_are_given():
    with pytest.raises(ValueError, match="unseen"):
        memorisation([np.ones(3)], [np.zeros(0)])
