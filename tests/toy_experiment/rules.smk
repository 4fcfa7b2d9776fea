# toy: the mean trait score of one prompt set, beside random directions (a test of the experiment registry).
TOY = S.experiment("toy")


rule toy:
    input:
        scores=L.scores(S.toy.variant, S.toy.prompt_set),
        baseline=L.baseline(S.toy.variant, S.toy.prompt_set),
        sidecars=vector_files("sidecar"),
    output:
        **TOY.files(L),
    params:
        toy=S.toy,
    log:
        L.log("toy"),
    benchmark:
        L.benchmark("toy")
    script:
        "scripts/toy.py"
