rule aggregate:
    input:
        evaluations=[f"{d}/metrics.json" for d in evaluations()],
        runs=[f"{d}/run.json" for d in trained_runs()],
    output:
        tsv="results/metrics.tsv",
        json="results/metrics.json",
    log:
        "logs/aggregate/aggregate.log",
    params:
        eval_dirs=evaluations(),
        run_dirs=trained_runs(),
    script:
        "../scripts/aggregate.py"


rule render_report:
    input:
        [f"{d}/steps.jsonl" for d in trained_runs()],
        [f"{d}/predictions.jsonl" for d in evaluations()],
        metrics="results/metrics.json",
        model=f"resources/models/{MODEL}",
        split_stats="results/data/split/stats.json",
        tokenize_stats="results/data/tokenized/stats.json",
        articles="results/data/split/test.jsonl",
    output:
        md="results/report/report.md",
        html="results/report/report.html",
    log:
        "logs/render_report/render_report.log",
    params:
        eval_dirs=evaluations(),
        run_dirs=trained_runs(),
    script:
        "../scripts/render_report.py"
