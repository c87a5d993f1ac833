"""Where the raw packages keep what the builds read, and the size profiles (demo, medium, full)."""
INFERNAL = "x/infernal/usr/share/doc/infernal/examples/testsuite"
RNATOOLS = "x/rna_tools/rna_tools/tools/rna_alignment/test_data"
OPTIMIR = "x/optimir/usr/lib/python3/dist-packages/optimir/resources/fasta"
METASTUDENT = "x/metastudent-data/usr/share/metastudent-data/dataset_201401"

# (file, family id in file or None for all, RNA type class); per-sequence #=GR SS is used when present
STOCKHOLM = [
    (f"{INFERNAL}/tRNA1415G.sto", None, "tRNA"),
    (f"{INFERNAL}/4.sto", "tRNA", "tRNA"),
    (f"{INFERNAL}/4.sto", "Vault", "Vault"),
    (f"{INFERNAL}/4.sto", "Plant_SRP", "SRP"),
    (f"{INFERNAL}/srp-euk.sto", None, "SRP"),
    (f"{INFERNAL}/3.4.12.rf.stk", "U1", "U1"),
    (f"{INFERNAL}/3.4.12.rf.stk", "U2", "U2"),
    (f"{INFERNAL}/3.4.12.rf.stk", "U3", "U3"),
    (f"{INFERNAL}/rnaseP-eubact.sto", None, "RNaseP"),
    (f"{RNATOOLS}/RF00001.blocked.stk", None, "5S_rRNA"),
    (f"{RNATOOLS}/RF00002.stockholm.stk", None, "5.8S_rRNA"),
    (f"{RNATOOLS}/u6_isl_rfam.sto", None, "U6"),
    (f"{RNATOOLS}/RF00379.stockholm.stk", None, "riboswitch"),
    (f"{RNATOOLS}/RF01831.stockholm.sto", None, "riboswitch"),
    (f"{RNATOOLS}/RF00167.stockholm.sto", None, "riboswitch"),
    (f"{RNATOOLS}/IA1.gissd.sto", None, "group_I_intron"),
    (f"{RNATOOLS}/IE2.gissd.sto", None, "group_I_intron"),
    (f"{RNATOOLS}/xrrna_rfam.sto", None, "xrRNA"),
    (f"{RNATOOLS}/RF02221.stockholm.sto", None, "sRNA_Xcc1"),
]
LOCALIZATION = {
    "GO:0005737": "Cytoplasm", "GO:0005886": "Cell_membrane", "GO:0005634": "Nucleus",
    "GO:0005576": "Extracellular", "GO:0005739": "Mitochondrion", "GO:0009507": "Plastid",
    "GO:0005783": "ER", "GO:0005794": "Golgi", "GO:0005773": "Vacuole", "GO:0005764": "Lysosome",
    "GO:0005777": "Peroxisome",
}
PROFILES = {
    # sizes of the committed demo subset and of the full on-demand build
    "demo": {"rna_rrna_windows": 8000, "rna_mirna": 7000, "rna_trna": 6000, "rna_max": 256, "rna_min": 30,
             "type_per_class": 100, "ss_per_family": 60, "ss_max": 400, "protein_pool": 20000,
             "protein_max": 400, "loc_per_class": 150, "pdb_chains": 2500, "pdb_max": 400},
    "medium": {"rna_rrna_windows": 45000, "rna_mirna": None, "rna_trna": None, "rna_max": 512, "rna_min": 30,
               "type_per_class": 200, "ss_per_family": 150, "ss_max": 512, "protein_pool": 100000,
               "protein_max": 512, "loc_per_class": 500, "pdb_chains": 6000, "pdb_max": 512},
    "full": {"rna_rrna_windows": None, "rna_mirna": None, "rna_trna": None, "rna_max": 1024, "rna_min": 30,
             "type_per_class": 300, "ss_per_family": 400, "ss_max": 1024, "protein_pool": None,
             "protein_max": 1024, "loc_per_class": 2000, "pdb_chains": None, "pdb_max": 1024},
}
