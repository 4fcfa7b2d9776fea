# harm_separation (config checks.harm_separation): does the harmful-instruction trait separate held-out harmful and
# harmless prompts? Results in results/harm_separation/.
HARM = S.experiment("harm_separation")


rule harm_separation:
    input:
        vectors=vector_files("vectors", [S.harm_separation.trait])[0],
        sidecar=vector_files("sidecar", [S.harm_separation.trait])[0],
        harmful=shards(L.activations, [S.extract.variant], [S.harm_separation.harmful]),
        harmless=shards(L.activations, [S.extract.variant], [S.harm_separation.harmless]),
    output:
        **reported(HARM.files(L), HARM.title, figure="harm_separation", json="harm_separation_json"),
    params:
        check=S.harm_separation,
        variant=S.extract.variant,
        seed=S.seed,
    log:
        L.log("harm_separation"),
    benchmark:
        L.benchmark("harm_separation")
    conda:
        ENV
    script:
        "scripts/harm_separation.py"
