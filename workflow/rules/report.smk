rule aggregate:
    input:
        metrics=[f"{d}/metrics.json" for d in evaluations()],
        predictions=[f"{d}/predictions.jsonl" for d in evaluations()],
        runs=[f"{d}/run.json" for d in trained_runs()],
    output:
        tsv=report(
            "results/{experiment}/metrics.tsv",
            caption="../report/metrics.rst",
            category="Tables",
            subcategory="Per run",
            labels={"table": "every run"},
        ),
        json="results/{experiment}/metrics.json",
        significance=report(
            "results/{experiment}/significance.tsv",
            caption="../report/significance.rst",
            category="Tables",
            subcategory="Comparisons",
            labels={"table": "paired bootstrap"},
        ),
        significance_json="results/{experiment}/significance.json",
        by_method=report(
            "results/{experiment}/metrics_by_method.tsv",
            caption="../report/metrics_by_method.rst",
            category="Tables",
            subcategory="Per method",
            labels={"table": "across seeds"},
        ),
        by_method_json="results/{experiment}/metrics_by_method.json",
    log:
        "logs/{experiment}/aggregate/aggregate.log",
    benchmark:
        "benchmarks/{experiment}/aggregate/aggregate.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/aggregate.py"


# Learning curves (data.train_sizes): scores against training size, crossovers and their tests.
rule aggregate_curve:
    input:
        metrics=[f"{d}/metrics.json" for d in curve_evaluations()],
        predictions=[f"{d}/predictions.jsonl" for d in curve_evaluations()],
        runs=[f"{d}/run.json" for d in curve_trained_runs()],
    output:
        json="results/{experiment}/curve.json",
        tsv=report(
            "results/{experiment}/curve.tsv",
            caption="../report/curve.rst",
            category="Tables",
            subcategory="Learning curves",
            labels={"table": "score against training size"},
        ),
    log:
        "logs/{experiment}/aggregate/aggregate_curve.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/aggregate_curve.py"


rule render_report:
    input:
        [f"{d}/steps.jsonl" for d in trained_runs()],
        runs=[f"{d}/run.json" for d in trained_runs()],
        # Every evaluation's predictions.jsonl; its metrics.json lies beside it.
        predictions=[f"{d}/predictions.jsonl" for d in evaluations()],
        evaluations=[f"{d}/metrics.json" for d in evaluations()],
        metrics="results/{experiment}/metrics.json",
        significance="results/{experiment}/significance.json",
        by_method="results/{experiment}/metrics_by_method.json",
        model=f"resources/models/{MODEL}",
        split_stats="results/{experiment}/data/split/stats.json",
        tokenize_stats="results/{experiment}/data/tokenized/stats.json",
        articles="results/{experiment}/data/split/test.jsonl",
        templates=REPORT_TEMPLATES,
        selections=expand(
            "results/{{experiment}}/select/{method}.json", method=list(GRIDS)
        ),
        curve=["results/{experiment}/curve.json"] if TRAIN_SIZES else [],
    output:
        md="results/{experiment}/report/report.md",
        html=report(
            "results/{experiment}/report/report.html",
            caption="../report/report.rst",
            category="Report",
            labels={"page": "comparison report"},
        ),
        explorer=report(
            "results/{experiment}/report/explorer.html",
            caption="../report/explorer.rst",
            category="Report",
            labels={"page": "explorer of every summary"},
        ),
        figures=report(
            directory("results/{experiment}/report/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{name}"},
        ),
    log:
        "logs/{experiment}/render_report/render_report.log",
    benchmark:
        "benchmarks/{experiment}/render_report/render_report.tsv"
    conda:
        "../../envs/report.yaml"
    params:
        # The data source and its sampling, as the report's setup shows them.
        data={**DATA_IDENTITY, "seed": config["data"]["seed"]},
    script:
        "../scripts/render_report.py"
