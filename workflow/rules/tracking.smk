# Experiment tracking (`tracking:` in the config, off by default): the finished runs go to
# TensorBoard and MLflow from their result files, so turning it on retrains nothing.


rule track:
    input:
        [f"{d}/run.json" for d in trained_runs()],
        [f"{d}/steps.jsonl" for d in trained_runs()],
        [f"{d}/metrics.json" for d in evaluations()],
        report="results/{experiment}/report/report.html",
        explorer="results/{experiment}/report/explorer.html",
    output:
        record="results/{experiment}/tracking/tracked.json",
        tensorboard=directory("results/{experiment}/tracking/tensorboard"),
    log:
        "logs/{experiment}/track/track.log",
    conda:
        "../../envs/tracking.yaml"
    params:
        tracking=config["tracking"],
        run_dirs=trained_runs(),
        eval_dirs=evaluations(),
    script:
        "../scripts/track.py"
