"""The family the report's verdicts come from: which pairs Holm corrects, the seeds' vote, and
the power columns, from aggregate.significance on hand-made scores."""

import numpy as np
import pytest

from peftsum.analysis import aggregate
from peftsum.analysis.stats import holm

N = 30


def system(name: str, seed, scores, trained: bool = True) -> tuple[dict, list[dict]]:
    row = {"name": name, "seed": seed, "trainable_params": 100 if trained else None}
    return row, [{"id": f"a{i}", "rougeL": float(s), "rougeLsum": float(s)}
                 for i, s in enumerate(scores)]


def study(leads: dict[str, tuple[float, ...]], baselines: dict[str, float],
          articles: int = N) -> list[dict]:
    """Trained methods with one lead per seed over a common article base, and baselines with
    one run each; each run adds its own article noise."""
    rng = np.random.default_rng(0)
    base = rng.uniform(10, 40, articles)
    systems = [system(name, seed, base + lead + rng.normal(0, 3, articles))
               for name, seeds in leads.items() for seed, lead in enumerate(seeds)]
    systems += [system(name, None, base + lead + rng.normal(0, 3, articles), trained=False)
                for name, lead in baselines.items()]
    return aggregate.significance(systems)


def pair_of(pairs, a, b):
    return next(p for p in pairs if {p["system_a"], p["system_b"]} == {a, b})


def test_holm_runs_over_the_verdict_family_only():
    pairs = study({"lora": (3.0, 3.5, 4.0), "prompt": (1.0, 0.5, 1.5), "full": (2.0, 2.4, 2.6)},
                  {"lead3": 0.8, "zero_shot": -6.0})
    verdicts = [p for p in pairs if p["family"] == aggregate.VERDICT]
    # Three trained pairs and each trained method against lead3, the strongest baseline.
    assert len(verdicts) == 3 + 3
    assert all("zero_shot" not in (p["system_a"], p["system_b"]) for p in verdicts)
    assert pair_of(pairs, "lead3", "zero_shot")["rougeL_p_holm"] is None  # context
    assert pair_of(pairs, "lora", "zero_shot")["family"] == aggregate.FLOOR
    for key in aggregate.TESTED_METRICS:
        ps = [p[f"{key}_p"] for p in verdicts]
        assert [p[f"{key}_p_holm"] for p in verdicts] == pytest.approx(holm(ps))
    assert any(p["rougeL_p_holm"] > p["rougeL_p"] > 0 for p in verdicts)


def test_the_floor_is_holm_corrected_within_itself():
    # Did training help: each trained method against the untrained model, lead3 the strongest
    # baseline. Close enough to zero_shot that Holm over three raises some p.
    pairs = study({"lora": (1.5, 2.0, 2.5), "prompt": (0.5, 1.0, 0.0), "full": (1.0, 1.5, 1.2)},
                  {"lead3": 3.0, "zero_shot": 0.0})
    floor = [p for p in pairs if p["family"] == aggregate.FLOOR]
    assert sorted(frozenset((p["system_a"], p["system_b"])) for p in floor) == sorted(
        frozenset((name, "zero_shot")) for name in ("lora", "prompt", "full"))
    verdicts = [p for p in pairs if p["family"] == aggregate.VERDICT]
    for key in aggregate.TESTED_METRICS:
        ps = [p[f"{key}_p"] for p in floor]
        assert [p[f"{key}_p_holm"] for p in floor] == pytest.approx(holm(ps))
        # Its own family: the verdicts' p do not enter it, nor its p the verdicts'.
        both = holm(ps + [p[f"{key}_p"] for p in verdicts])
        assert [p[f"{key}_p_holm"] for p in floor] != pytest.approx(both[:len(floor)])
    assert any(p["rougeL_p_holm"] > p["rougeL_p"] for p in floor)
    alone = pair_of(study({"lora": (1.5, 2.0, 2.5)}, {"lead3": 3.0, "zero_shot": 0.0}),
                    "lora", "zero_shot")
    assert alone["rougeL_p_holm"] == pytest.approx(alone["rougeL_p"])  # a family of one


def test_the_untrained_model_as_strongest_baseline_is_corrected_once():
    # Both questions ask lora against zero_shot here: one test, in the verdict family (the
    # larger, so the stricter), and no floor family beside it.
    pairs = study({"lora": (3.0, 3.5, 4.0), "prompt": (1.0, 0.5, 1.5)},
                  {"zero_shot": 0.0, "lead3": -2.0})
    assert {p["family"] for p in pairs} == {aggregate.VERDICT, aggregate.CONTEXT}
    verdicts = [p for p in pairs if p["family"] == aggregate.VERDICT]
    assert len(verdicts) == 1 + 2  # one trained pair, two against zero_shot
    assert [p["rougeL_p_holm"] for p in verdicts] == pytest.approx(
        holm([p["rougeL_p"] for p in verdicts]))


def test_seeds_ahead_counts_the_seeds_where_the_leader_scored_higher():
    # lora's mean is ahead, but only two of its three seeds beat prompt's same-numbered seed.
    pairs = study({"lora": (4.0, 4.0, -3.0), "prompt": (0.0, 0.0, 0.0)}, {})
    pair = pair_of(pairs, "lora", "prompt")
    assert pair["system_a"] == "lora" and pair["design"] == "seeds"
    assert (pair["rougeL_seeds_ahead"], pair["rougeL_seed_pairs"]) == (2, 3)


def test_one_seed_is_a_comparison_of_checkpoints():
    pairs = study({"lora": (3.0,), "prompt": (0.0,)}, {"lead3": -1.0})
    assert {p["design"] for p in pairs} == {"checkpoints"}
    assert all(p["seeds_needed"] is None for p in pairs)  # seed variance was not measured


def test_a_missed_difference_says_what_would_find_it():
    pairs = study({"lora": (1.0, 0.0, 2.0), "prompt": (0.0, 0.5, 0.3)}, {})
    pair = pair_of(pairs, "lora", "prompt")
    assert pair["rougeL_p_holm"] >= 0.05
    assert pair["detectable_80"] > pair["rougeL_diff"]
    assert pair["seeds_needed"] is None or pair["seeds_needed"] > 3
    assert pair["articles_needed"] is None or pair["articles_needed"] > N


def test_a_family_of_sixteen_systems_can_call_a_pair():
    # make methods' shape: 14 trained methods with one seed, 2 baselines, 20 test articles;
    # 105 verdict pairs. With 5 ROUGE points between neighbours Holm still calls pairs (with a
    # resampling floor of 1/1001 its smallest adjusted p was 0.105).
    pairs = study({f"m{i}": (5.0 * i,) for i in range(14)}, {"lead3": -5.0, "zero_shot": -10.0},
                  articles=20)
    verdicts = [p for p in pairs if p["family"] == aggregate.VERDICT]
    assert len(verdicts) == 14 * 13 // 2 + 14
    assert min(p["rougeL_p_holm"] for p in verdicts) < 0.001
    assert sum(p["rougeL_p_holm"] < 0.05 for p in verdicts) > len(verdicts) // 2


def test_the_report_calls_single_runs_checkpoints():
    from peftsum.report import render

    methods = [{"name": n, "kind": "lora", "rougeL_mean": m, "n_seeds": 1}
               for n, m in (("a", 30.0), ("b", 29.0), ("c", 20.0))]
    pairs = [{"system_a": x, "system_b": y, "design": "checkpoints",
              "family": aggregate.VERDICT, "rougeL_p": 0.001, "rougeL_p_holm": 0.003,
              "rougeL_diff": d, "rougeL_seeds_ahead": 1, "rougeL_seed_pairs": 1}
             for x, y, d in (("a", "b", 1.0), ("a", "c", 10.0), ("b", "c", 9.0))]
    said = render.findings([], methods, pairs)
    assert any("comparing two trained checkpoints" in s for s in said)
    assert any(s.startswith("The other pairs of trained methods (one checkpoint each")
               for s in said)


def test_a_pair_outside_both_families_is_no_verdict():
    # lora against zero_shot_chat: neither the strongest baseline (lead3) nor the untrained
    # model in the methods' template, so context however small its p.
    from peftsum.report import render

    pairs = study({"lora": (10.0,)}, {"lead3": 5.0, "zero_shot_chat": 0.0, "zero_shot": -3.0})
    chat = pair_of(pairs, "lora", "zero_shot_chat")
    assert chat["family"] == aggregate.CONTEXT and chat["rougeL_p_holm"] is None
    assert chat["rougeL_p"] < 0.001
    cell = render.p_cell(chat, "rougeL")
    assert (cell.text, cell.bold) == ("(< 0.001)", False)
    floor = pair_of(pairs, "lora", "zero_shot")
    assert floor["family"] == aggregate.FLOOR and render.p_cell(floor, "rougeL").bold
    methods = [{"name": name, "kind": "lora" if name == "lora" else "baseline",
                "rougeL_mean": mean, "n_seeds": 1}
               for name, mean in (("lora", 30.0), ("lead3", 25.0), ("zero_shot_chat", 20.0),
                                  ("zero_shot", 17.0))]
    said = " ".join(render.findings([], methods, pairs))
    assert "over zero_shot_chat is significant" not in said
    assert "zero_shot_chat cannot be told apart" not in said
    assert "training helped: lora beats the untrained model, zero_shot (lora: p < 0.001" in said
