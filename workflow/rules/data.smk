# Data: the official archive (only when data.source is "official") and the
# one prepared file every later stage reads, of data.dataset (the rules keep
# their CIFAR-10 names for both data sets).


rule download_cifar10:
    output:
        OFFICIAL_ARCHIVE,
    log:
        "results/logs/download_cifar10.log",
    localrule: True
    conda:
        "../../envs/prunelens.yaml"
    resources:
        # Untracked: how long to wait cannot change the archive. Retries
        # happen inside the job, bounded by this; the rule has none.
        download_timeout=config["data"]["download_timeout"],
    params:
        url=config["data"]["official_url"][DATASET],
        md5=config["data"]["official_md5"][DATASET],
    script:
        "../scripts/download_cifar10.py"


rule prepare_cifar10:
    input:
        archive=cifar10_archive,
    output:
        PREPARED,
    log:
        "results/logs/prepare_cifar10.log",
    conda:
        "../../envs/prunelens.yaml"
    resources:
        runtime=30,
        mem_mb=2000 + (N_TRAIN + N_TEST) // 30,  # 4000 for all of CIFAR-10
    params:
        source=config["data"]["source"],
        # only the checksum of the archive read: the other cannot change it
        sha256=(
            config["data"]["images_sha256"]
            if config["data"]["source"] == "images"
            else None
        ),
        md5=(
            config["data"]["official_md5"][DATASET]
            if config["data"]["source"] == "official"
            else None
        ),
        subset_train=config["data"]["subset_train"],
        subset_test=config["data"]["subset_test"],
        dataset=DATASET,
    script:
        "../scripts/prepare_cifar10.py"
