"""Write RESULTS.md, the findings, from the results files in benchmarks/results/.

    python -m benchmarks.results_doc            # writes RESULTS.md at the repository root
    python -m benchmarks.results_doc --check    # exit 1 if the committed RESULTS.md differs

RESULTS.md is generated: edit this package or the results files, never the document. The document is a
list of sections, one per question (SECTIONS in sections.py); each section is a list of blocks, and a block
is a function that reads results files through `Results` and returns markdown. Every table names its file,
the commit(s) and the machine recorded in that file. `Results` remembers which files the blocks read: the
appendix lists every results file that no section used, and renders any unused file with a `cells` list
(the schema of fusion-beauty.json) with the generic cells table, so nothing is silently dropped.

The modules, one idea each:

    load.py         Results (the files, and which were read), provenance and captions, machines
    stats.py        the two-sample t-test over seeds (no scipy)
    tables.py       formatting helpers, display names, generic blocks (table, text, cells_table, cells_block)
    experiments.py  Table 1 and Table 2 (experiment-<dataset>.json), TSLRec minus Base, backbones
    fusion.py       frozen tables, the item-to-item probe, settings tried, the SFT target
    cost.py         the language-model stage's cost, TSLRec against E4SRec
    speed.py        seconds per epoch, the main job, growth on synthetic data, start-up
    item_text.py    item text (text-<dataset>.json): cells, choice, popularity bins, verdicts, the target
    baselines.py    the paper's LLM baselines (P5, POD, LlamaRec, E4SRec) beside our Base and TSLRec
    sections.py     SECTIONS: the questions, their intros and blocks
    document.py     the header, machines overview, contents, appendix: render()
    __main__.py     the command line

To add a section: write a block (or reuse `cells_block`, `table2_block`, ...) and append a
`Section(question, intro, [blocks])` to SECTIONS. The package reads JSON and CSV only and imports nothing
from tslrec (nor touches the import path), so it runs in any Python 3.9+ without the project's dependencies.
"""
