# Experiment tracking (`tracking:` in the config, off by default): the finished runs go to
# TensorBoard and MLflow from their result files, so turning it on retrains nothing.


rule track:
    input:
        [paths.run_json(d) for d in trained_runs()],
        [paths.steps(d) for d in trained_runs()],
        [paths.metrics_json(d) for d in evaluations()],
        report=paths.REPORT_HTML,
        explorer=paths.EXPLORER_HTML,
    output:
        record=paths.TRACKED,
        tensorboard=directory(paths.TENSORBOARD),
    log:
        paths.log("track", "track"),
    conda:
        "../../envs/tracking.yaml"
    params:
        tracking=config["tracking"],
        run_dirs=trained_runs(),
        eval_dirs=evaluations(),
    script:
        "../scripts/track.py"
