# lead3's folder among the baselines' (paths.BASELINE).
LEAD3 = paths.BASELINE.format(experiment="{experiment}", baseline="lead3")


rule evaluate:
    input:
        tokenized=paths.split_file(paths.TOKENIZED, "test"),
        split=paths.split_file(paths.SPLIT, "test"),
        model=paths.MODEL.format(model=MODEL),
        # run.json names the method and its hyperparameters: the config is not read again.
        run=paths.run_json(paths.TRAIN_RUN),
        weights=paths.weights(paths.TRAIN_RUN),
    output:
        metrics=paths.metrics_json(paths.EVALUATION),
        predictions=paths.predictions(paths.EVALUATION),
    log:
        paths.log("evaluate", "{method}_seed{seed}"),
    benchmark:
        paths.benchmark("evaluate", "{method}_seed{seed}")
    conda:
        "../../envs/torch.yaml"
    threads: THREADS
    resources:
        gpu=1,
    params:
        decoding=DECODING,
    script:
        "../scripts/evaluate.py"


rule evaluate_zero_shot:
    input:
        tokenized=zero_shot_tokens,
        split=paths.split_file(paths.SPLIT, "test"),
        model=paths.MODEL.format(model=MODEL),
    output:
        metrics=paths.metrics_json(paths.BASELINE),
        predictions=paths.predictions(paths.BASELINE),
    log:
        paths.log("evaluate", "{baseline}"),
    benchmark:
        paths.benchmark("evaluate", "{baseline}")
    wildcard_constraints:
        baseline="zero_shot|zero_shot_chat",
    conda:
        "../../envs/torch.yaml"
    threads: THREADS
    resources:
        gpu=1,
    params:
        decoding=DECODING,
    script:
        "../scripts/evaluate.py"


rule evaluate_lead3:
    input:
        split=paths.split_file(paths.SPLIT, "test"),
    output:
        metrics=paths.metrics_json(LEAD3),
        predictions=paths.predictions(LEAD3),
    log:
        paths.log("evaluate", "lead3"),
    benchmark:
        paths.benchmark("evaluate", "lead3")
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/lead3.py"


# A learning curve's run on the same test set and decoding as the full-size runs.
use rule evaluate as evaluate_size with:
    input:
        tokenized=paths.split_file(paths.TOKENIZED, "test"),
        split=paths.split_file(paths.SPLIT, "test"),
        model=paths.MODEL.format(model=MODEL),
        run=paths.run_json(paths.CURVE_RUN),
        weights=paths.weights(paths.CURVE_RUN),
    output:
        metrics=paths.metrics_json(paths.CURVE_EVALUATION),
        predictions=paths.predictions(paths.CURVE_EVALUATION),
    log:
        paths.log("evaluate", "curve_n{size}_{method}_seed{seed}"),
    benchmark:
        paths.benchmark("evaluate", "curve_n{size}_{method}_seed{seed}")


# A grid point's summaries of validation articles, for selection by ROUGE-L: the validation
# split only, decoded as the test evaluation is.
use rule evaluate as evaluate_point with:
    input:
        tokenized=paths.SELECT_TOKENIZED,
        split=paths.SELECT_SPLIT,
        model=paths.MODEL.format(model=MODEL),
        run=paths.run_json(paths.SWEEP_RUN),
        weights=paths.weights(paths.SWEEP_RUN),
    output:
        metrics=paths.metrics_json(paths.SWEEP_VALIDATION),
        predictions=paths.predictions(paths.SWEEP_VALIDATION),
    log:
        paths.log("evaluate", "{method}_{point}_seed{seed}_validation"),
    benchmark:
        paths.benchmark("evaluate", "{method}_{point}_seed{seed}_validation")
