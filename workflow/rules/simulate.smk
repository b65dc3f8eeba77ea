# The cohort simulator (used when bids_dir is null): dataset tables, then one job per subject.


rule simulate_cohort_tables:
    input:
        config["simulation"],
    output:
        participants=SIM_BIDS / "participants.tsv",
        description=SIM_BIDS / "dataset_description.json",
        subjects=SIM_BIDS / "derivatives" / "simulation" / "subjects.tsv",
        effects=SIM_BIDS / "derivatives" / "simulation" / "effects.tsv",
    log:
        LOGS / "simulate_cohort_tables.log",
    benchmark:
        BENCH / "simulate_cohort_tables.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=config["resources"]["simulate_mem_mb"],
        runtime=20,
    script:
        "../scripts/simulate_cohort_tables.py"


rule simulate_subject:
    input:
        config=config["simulation"],
        participants=rules.simulate_cohort_tables.output.participants,
        subjects=rules.simulate_cohort_tables.output.subjects,
    output:
        sim_subject_outputs() + sim_truth_outputs(),
    log:
        LOGS / "simulate_subject" / "{subject}.log",
    benchmark:
        BENCH / "simulate_subject" / "{subject}.tsv"
    group:
        "subject"
    conda:
        ENV
    threads: config["resources"]["simulate_threads"]
    resources:
        mem_mb=config["resources"]["simulate_mem_mb"],
        runtime=30,
    script:
        "../scripts/simulate_subject.py"


rule simulation_figure:
    input:
        sim_subject_outputs() + sim_truth_outputs(),
    output:
        report(
            OUT / "simulation" / "figures" / "{subject}_simulation.png",
            caption="../report/simulation_figure.rst",
            category="Simulation",
        ),
    log:
        LOGS / "simulation_figure" / "{subject}.log",
    benchmark:
        BENCH / "simulation_figure" / "{subject}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/simulation_figure.py"
