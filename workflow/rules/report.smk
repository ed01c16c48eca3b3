rule aggregate:
    input:
        metrics=[paths.metrics_json(d) for d in evaluations()],
        predictions=[paths.predictions(d) for d in evaluations()],
        runs=[paths.run_json(d) for d in trained_runs()],
    output:
        tsv=report(
            paths.TABLE_TSV,
            caption="../report/metrics.rst",
            category="Tables",
            subcategory="Per run",
            labels={"table": "every run"},
        ),
        json=paths.TABLE_JSON,
        significance=report(
            paths.SIGNIFICANCE_TSV,
            caption="../report/significance.rst",
            category="Tables",
            subcategory="Comparisons",
            labels={"table": "paired bootstrap"},
        ),
        significance_json=paths.SIGNIFICANCE_JSON,
        by_method=report(
            paths.BY_METHOD_TSV,
            caption="../report/metrics_by_method.rst",
            category="Tables",
            subcategory="Per method",
            labels={"table": "across seeds"},
        ),
        by_method_json=paths.BY_METHOD_JSON,
    log:
        paths.log("aggregate", "aggregate"),
    benchmark:
        paths.benchmark("aggregate", "aggregate")
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/aggregate.py"


# Learning curves (data.train_sizes): scores against training size, crossovers and their tests.
rule aggregate_curve:
    input:
        metrics=[paths.metrics_json(d) for d in curve_evaluations()],
        predictions=[paths.predictions(d) for d in curve_evaluations()],
        runs=[paths.run_json(d) for d in curve_trained_runs()],
    output:
        json=paths.CURVE_JSON,
        tsv=report(
            paths.CURVE_TSV,
            caption="../report/curve.rst",
            category="Tables",
            subcategory="Learning curves",
            labels={"table": "score against training size"},
        ),
    log:
        paths.log("aggregate", "aggregate_curve"),
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/aggregate_curve.py"


rule render_report:
    input:
        [paths.steps(d) for d in trained_runs()],
        runs=[paths.run_json(d) for d in trained_runs()],
        # Every evaluation's predictions.jsonl; its metrics.json lies beside it.
        predictions=[paths.predictions(d) for d in evaluations()],
        evaluations=[paths.metrics_json(d) for d in evaluations()],
        metrics=paths.TABLE_JSON,
        significance=paths.SIGNIFICANCE_JSON,
        by_method=paths.BY_METHOD_JSON,
        model=paths.MODEL.format(model=MODEL),
        split_stats=paths.stats(paths.SPLIT),
        tokenize_stats=paths.stats(paths.TOKENIZED),
        articles=paths.split_file(paths.SPLIT, "test"),
        templates=REPORT_TEMPLATES,
        selections=expand(paths.SELECT_GRID, method=list(GRIDS), allow_missing=True),
        curve=[paths.CURVE_JSON] if TRAIN_SIZES else [],
    output:
        md=paths.REPORT_MD,
        html=report(
            paths.REPORT_HTML,
            caption="../report/report.rst",
            category="Report",
            labels={"page": "comparison report"},
        ),
        explorer=report(
            paths.EXPLORER_HTML,
            caption="../report/explorer.rst",
            category="Report",
            labels={"page": "explorer of every summary"},
        ),
        figures=report(
            directory(paths.FIGURES),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{name}"},
        ),
    log:
        paths.log("render_report", "render_report"),
    benchmark:
        paths.benchmark("render_report", "render_report")
    conda:
        "../../envs/report.yaml"
    params:
        # The data source and its sampling, as the report's setup shows them.
        data={**DATA_IDENTITY, "seed": config["data"]["seed"]},
    script:
        "../scripts/render_report.py"
