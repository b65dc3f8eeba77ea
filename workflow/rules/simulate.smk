# The cohort simulator (used when bids_dir is null): dataset tables, then one job per subject.
from qsmvbm.layout import truth_table


rule simulate_cohort_tables:
    input:
        config["simulation"],
    output:
        participants=L.sim_bids / "participants.tsv",
        description=L.sim_bids / "dataset_description.json",
        subjects=truth_table(L.sim_bids, "subjects"),
        effects=truth_table(L.sim_bids, "effects"),
    log:
        L.log("simulate_cohort_tables"),
    benchmark:
        L.benchmark("simulate_cohort_tables")
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
        L.log("simulate_subject", "{subject}"),
    benchmark:
        L.benchmark("simulate_subject", "{subject}")
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
            L.simulation_figure(),
            caption="../report/simulation_figure.rst",
            category="Simulation",
        ),
    log:
        L.log("simulation_figure", "{subject}"),
    benchmark:
        L.benchmark("simulation_figure", "{subject}")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/simulation_figure.py"
