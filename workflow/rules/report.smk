rule aggregate:
    input:
        metrics=[f"{d}/metrics.json" for d in evaluations()],
        predictions=[f"{d}/predictions.jsonl" for d in evaluations()],
        runs=[f"{d}/run.json" for d in trained_runs()],
    output:
        tsv=report(
            "results/metrics.tsv",
            category="Tables",
            labels={"table": "every run"},
        ),
        json="results/metrics.json",
        significance=report(
            "results/significance.tsv",
            category="Tables",
            labels={"table": "paired bootstrap"},
        ),
        significance_json="results/significance.json",
        by_method=report(
            "results/metrics_by_method.tsv",
            category="Tables",
            labels={"table": "across seeds"},
        ),
        by_method_json="results/metrics_by_method.json",
    log:
        "logs/aggregate/aggregate.log",
    benchmark:
        "benchmarks/aggregate/aggregate.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/aggregate.py"


rule render_report:
    input:
        [f"{d}/steps.jsonl" for d in trained_runs()],
        runs=[f"{d}/run.json" for d in trained_runs()],
        # Every evaluation's predictions.jsonl; its metrics.json lies beside it.
        predictions=[f"{d}/predictions.jsonl" for d in evaluations()],
        evaluations=[f"{d}/metrics.json" for d in evaluations()],
        metrics="results/metrics.json",
        significance="results/significance.json",
        by_method="results/metrics_by_method.json",
        model=f"resources/models/{MODEL}",
        split_stats="results/data/split/stats.json",
        tokenize_stats="results/data/tokenized/stats.json",
        articles="results/data/split/test.jsonl",
        templates=REPORT_TEMPLATES,
    output:
        md="results/report/report.md",
        html=report(
            "results/report/report.html",
            category="Report",
            labels={"report": "comparison"},
        ),
        figures=report(
            directory("results/report/figures"),
            patterns=["{name}.png"],
            category="Figures",
        ),
    log:
        "logs/render_report/render_report.log",
    benchmark:
        "benchmarks/render_report/render_report.tsv"
    params:
        # The data source and its sampling, as the report's setup shows them.
        data={**DATA_IDENTITY, "seed": config["data"]["seed"]},
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/render_report.py"
