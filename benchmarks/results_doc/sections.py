"""SECTIONS: the questions RESULTS.md answers, in order, each an intro and a list of blocks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .cost import core_block, efficiency_block, llm_stage_block, prefix_block, sft_epoch_block
from .experiments import (backbones_block, e4srec_csv_block, maxlen_block, table1_block, table2_block, tslrec_vs_base_block,
                          twins_block, variants_block)
from .fusion import caser_source_block, fusion_source_block, probe_block, sft_target_block, trials_block
from .baselines import llm_baselines_block
from .beside_table2 import beside_table2_block
from .item_text import TEXT_DATASETS, text_dataset_block, text_profile_block, text_target_block
from .load import Results
from .speed import main_job_block, quality_bf16_block, scaling_block, speed_block, startup_block
from .tables import DATASET_NAMES, cells_block, cells_diff_block, figure_list
from .text_cost import (NODROP_TITLE, attention_kernel_block, dropout_draws_block, lm_dropout_block, run_all_text_block,
                        text_cost_block)


@dataclass
class Section:
    """One question of the document: its heading, an intro with the answer, and the blocks that show it."""
    question: str
    intro: str
    blocks: list[Callable[[Results], str]] = field(default_factory=list)


EXPERIMENTS = {"beauty": "experiment-beauty.json", "yelp": "experiment-yelp.json", "ml-1m": "experiment-ml-1m.json"}

SECTIONS: list[Section] = [
    Section(
        "Does TSLRec help, and for which backbone and dataset?",
        """
Table 2 of the paper, reproduced on the three datasets with the four backbones: Base (the backbone alone), CI
(a learnable embedding per pre-grouped category) and TSLRec (the backbone's item embedding gated with the
frozen enhanced embeddings), 3 training seeds each on one upstream chain per dataset (SASRec pretrain,
k-means K=16, MiniLM-L6 SFT and augment, seed 42). **Answer:** TSLRec lifts the two weak backbones (GRU4Rec,
Caser) a long way on Beauty and Yelp, and a little (Caser) or not at all (GRU4Rec) on ML-1M; it lowers the
two strong backbones (SASRec, FMLP-Rec) on Beauty and Yelp, and SASRec on ML-1M, where the paper reports gains.
Under the paper's own settings (`--profile paper`) and with the whole chain re-seeded the sign stays. Our Base
rows match or beat the paper's under its protocol, except on ML-1M, where our *masked* figures match the
paper's rows. Section 2 shows where the weak backbones' gain comes from: SASRec's pretrain table, not the
language model.
""",
        [table1_block({DATASET_NAMES[k]: v for k, v in EXPERIMENTS.items()}), tslrec_vs_base_block(EXPERIMENTS)] +
        [table2_block(n, ds) for ds, n in EXPERIMENTS.items()] +
        [variants_block("Seeds through the whole chain, SASRec on Beauty",
                        [("downstream seeds only (Table 2)", "experiment-beauty.json", "sasrec"),
                         ("pretrain, k-means, SFT and augment re-seeded too", "experiment-beauty-chain.json", "sasrec")],
                        "Base is the same model both ways (SASRec's pretrain at seed s)."),
         variants_block("Beauty under the paper's settings (`--profile paper`: dimension 256, lr 1e-4, batch 1,024; "
                        "its own chain)",
                        [("SASRec, paper's settings", "experiment-beauty-paper.json", "sasrec"),
                         ("SASRec, our defaults", "experiment-beauty.json", "sasrec"),
                         ("FMLP-Rec, paper's settings", "experiment-beauty-paper.json", "fmlprec"),
                         ("FMLP-Rec, our defaults", "experiment-beauty.json", "fmlprec")],
                        partial_note="Partial: a row has fewer seeds than the others (docs/benchmarks.md says "
                                     "how to run the rest)."),
         twins_block("The same ML-1M cells on two machines", "experiment-ml-1m.json", "experiment-ml-1m-h200.json",
                     "2-core CPU", "H200 (its own chain)"),
         twins_block("The same Beauty cells on two machines", "experiment-beauty.json", "experiment-beauty-h100.json",
                     "2-core CPU", "H100 (partial grid, MiniLM weights rounded to fp16)"),
         backbones_block("backbones-beauty.json", "beauty"),
         backbones_block("backbones-ml-1m.json", "ml-1m"),
         maxlen_block("ml-1m-maxlen.json"),
         variants_block("Earlier fp32 runs on Beauty (before the bf16 defaults and the padding fix)",
                        [("SASRec, 3 seeds", "experiment-beauty-session2-fp32.json", "sasrec"),
                         ("GRU4Rec, seed 42", "experiment-beauty-backbones.json", "gru4rec"),
                         ("Caser, seed 42", "experiment-beauty-backbones.json", "caser"),
                         ("SASRec, seed 42", "experiment-beauty-backbones.json", "sasrec")],
                        "In the one-seed runs only the downstream backbone changes; the enhanced embeddings are "
                        "those of the default SASRec chain."),
         figure_list([
             ("Fig. 5 (users binned by training length): on Beauty and Yelp SASRec's and FMLP-Rec's loss under TSLRec shows "
              "in every activity bin, largest for the least active users; on ML-1M SASRec's loss is largest for the less "
              "active users (16-67 training items: NDCG@10 0.237 -> 0.232 and 0.214 -> 0.203) and nearly gone for the most "
              "active (251+: 0.131 -> 0.129); the figures are `benchmarks/results/table2/fig5_*.png`, written by "
              "`tslrec report` from the three experiment files above", "README at commit d1e83df"),
             ("Validation NDCG@10 is about 20% above test for every model on this split (the last item is harder to "
              "predict than the second-to-last)", "README at commit daf1eb8"),
         ])],
    ),
    Section(
        "Which fusion and which item table?",
        """
Every fusion of the frozen table with the ID embedding (`train.fusion`: the paper's gate, add, init, dual,
nullspace, ensemble) on every frozen table (`train.source`: the enhanced embeddings of MiniLM-L6 or
SmolLM2-135M, the pretrain backbone's own item table, a fixed random table), on the two strong backbones, 3 seeds
each, on Table 2's Beauty chain. **Answer:** no fusion makes the enhanced embeddings beat the backbone's own
pretrain table, on either backbone, with either LM; the gate, add and dual fusions on a frozen table cost a
strong backbone accuracy; what gains there are come from a second model (the ensemble), and its control (two
Base models) gains as much. The one cell that passed the target on seeds 42-44 (FMLP-Rec, init on SmolLM2's
table) did not replicate on fresh seeds: it was 1 of 24 enhanced-against-pretrain comparisons (2 backbones x 6
fusions x 2 LMs), and validation preferred the pretrain table. Why: by construction an item's enhanced embedding
is the tuned LM's reading of that item's pretrain embedding alone (TSLRec gives the LM no item text), and the
item-to-item probe shows it keeps less next-item signal than the table it came from; the SFT and LoRA settings
tried do not change that.
What to use: with a strong backbone, Base (or an ensemble of two Base models); with a weak one, the paper's
gate, which passes on SASRec's knowledge.
""",
        [cells_block("fusion-beauty.json", "Fusions x item tables on Beauty, SASRec and FMLP-Rec",
                     ["sasrec", "fmlprec"],
                     note="Base and the gate on MiniLM's table are Table 2's runs (the same cache keys). The ensemble's "
                          "control runs are those made after commit c7dc7ea, which gave each member its own resume "
                          "point (before it, the second member resumed from the first's checkpoint)."),
         cells_diff_block("fusion-beauty.json", "pretrain", "Enhanced table minus the pretrain table, same fusion",
                          ["sasrec", "fmlprec"], ["enhanced-minilm", "enhanced-smollm2"]),
         cells_diff_block("fusion-beauty.json", "random", "Enhanced table minus a fixed random table, same fusion",
                          ["sasrec", "fmlprec"], ["enhanced-minilm", "enhanced-smollm2"]),
         cells_diff_block("fusion-beauty.json", "none", "Each ensemble minus its control (base + base), same backbone",
                          ["sasrec", "fmlprec"], ["enhanced-minilm", "enhanced-smollm2", "pretrain", "random"]),
         cells_block("fusion-beauty-init-replication.json",
                     "Replication on fresh seeds 45-47: FMLP-Rec's init on three tables",
                     note="The check was fixed before the runs."),
         fusion_source_block("fusion-source-beauty.json", "backbones-beauty.json", "sasrec",
                             "The gate on other frozen tables, fp32"),
         caser_source_block("fusion-source-beauty-caser.json", "experiment-beauty-backbones.json"),
         probe_block("embedding-probe-*.json"),
         trials_block("tslrec-trials-beauty.json"),
         sft_target_block("sft-target.json")],
    ),
    Section(
        "What does the language-model stage cost, against E4SRec?",
        """
TSLRec tunes the LLM once per *user* (one instance each); E4SRec (`sft.task=next_item`) once per training
prefix. **Answer:** with the same LM, one TSLRec SFT epoch costs 6-9x less than E4SRec's on Beauty and Yelp and
about 150x less on ML-1M (long histories): roughly the ratio of instances (users against training prefixes).
E4SRec with a small LM ranks below every Base backbone on Beauty. A decoder LM (SmolLM2-135M) costs many times
MiniLM-L6's SFT epoch on a CPU; shared-prefix KV reuse makes decoder steps 2-5x faster with the same outputs.
""",
        [llm_stage_block({"Beauty": "experiment-beauty.json", "Yelp": "experiment-yelp.json",
                          "ML-1M": "experiment-ml-1m.json", "Beauty, `--profile paper`": "experiment-beauty-paper.json"}),
         efficiency_block("efficiency-*.json"),
         e4srec_csv_block("experiment-beauty/table2.csv", "experiment-beauty-session2-fp32.json"),
         sft_epoch_block("sft-epoch-*.json"),
         prefix_block("prefix-reuse.json"),
         core_block("core-beauty.json"),
         figure_list([
             ("E4SRec on Beauty, one full training epoch measured (not extrapolated): 2,436 s, MiniLM-L6, 1 thread with "
              "the other core busy", "README at commit daf1eb8; code f7f19f5"),
             ("E4SRec's validation HR@10 / NDCG@10 on Beauty: 0.0786 / 0.0420 (test: the table above)",
              "README at commit daf1eb8"),
             ("SmolLM2-135M's SFT epoch on Beauty in the fusion grid: 1,519 s on one shared thread (MiniLM-L6: 229 s); "
              "its validation MSE 0.0686 against MiniLM-L6's 0.0653", "README at commit 72f03b1, 2-core AMD EPYC with AVX512-BF16"),
         ])],
    ),
    Section(
        "How fast is it?",
        """
Seconds per training epoch of the four backbones (the real step: `trainer.batch_loss` + Adam over one epoch of
the real batches) in fp32 and bf16, full-ranking evaluation, and the main job end to end. No RecBole timing is
committed: the comparison point is the paper's protocol, which we follow (full softmax, full ranking).
**Answer:** on a CPU with native bf16 (AVX512-BF16) bf16 makes an epoch about 2x faster at the same
validation quality, and the main job takes about 9 minutes on 2 cores; on a CPU without it bf16 is emulated and
12x *slower*, so the default `precision: auto` picks fp32 there (the main job: 38 minutes). On an H100 the
main job takes under 3 minutes; at dimension 64 the GPU is bound by kernel launches, so bf16 does not pay there.
""",
        [main_job_block("run-all-beauty-avx2.json", "speed-beauty.json", "speed-gpu-beauty.json", "cuda-h100-beauty.json"),
         speed_block("speed-beauty.json", "Training speed on Beauty, CPU with native bf16"),
         speed_block("speed-ml-1m.json", "Training speed on ML-1M, CPU with native bf16"),
         speed_block("speed-ml-1m-1thread.json", "SASRec on ML-1M, one thread beside two other jobs"),
         speed_block("speed-beauty-avx2.json", "SASRec on Beauty, CPU without native bf16"),
         speed_block("speed-gpu-beauty.json", "Training speed on Beauty, one H100", last_epoch=True),
         quality_bf16_block("quality-bf16-beauty.json"),
         figure_list([
             ("The full-softmax loss alone, a 1,500 x 12,101 block, 1 thread: 0.143 s fp32 -> 0.048 s bf16; cache-sized "
              "loss blocks (2M logits instead of 32M): 1.6-1.9x; evaluation batches of 128 users: 1.7x over 1,024",
              "README at commit 72f742c, 2-core AMD EPYC with AVX512-BF16"),
             ("bf16 MiniLM in sft: SFT epoch 124 s vs 229 s in fp32, validation MSE 0.0629 vs 0.0604 (mean baseline 0.359)",
              "README at commit 72f742c, 2-core AMD EPYC with AVX512-BF16"),
             ("One training step at the paper's dimension 256 in bf16 on the AVX2-only CPU: about 24x slower than fp32 "
              "(a one-off timing); the paper-profile SASRec pretrain's first epoch there: 1,570 s against 14.2 s per epoch "
              "on the AVX512-BF16 CPU", "README at commit 6607b09"),
             ("Before the speed work (fp32): `tslrec run all --dataset beauty` 1,496 s with 2 threads (pretrain 411 s, "
              "sft 229 s, augment 27 s, train ci 323 s, train tslrec 502 s); the same command again, all cached, 2 s",
              "README at commit daf1eb8, code f7f19f5"),
             ("`tslrec --device cuda run all --dataset beauty` on one H100: train ci 17 s, train tslrec 32 s (the "
              "stages before them: the table above)", "README at commit f3845b6"),
             ("Full-ranking evaluation of Beauty's 22,363 users, 1 thread, fp32: 11.9 s -> 4.3 s (commit f8c991a)",
              "README at commit daf1eb8"),
             ("Start-up under a heavier load (load average 7): the light commands 0.43-0.85 s, the baseline tree's 3.5-5.5 s",
              "README at commit 7ebd01d"),
             ("Offline check of the README's first command with one epoch per training, `sft.model=tiny-bert`, "
              "`sft.max_items=5`: 4.4 min while other jobs loaded the 2-core AVX512-BF16 CPU",
              "README at commit 4b2512f"),
         ])],
    ),
    Section(
        "How does the cost grow?",
        """
Every stage on synthetic datasets of 10k, 100k and 1M users (items = users / 10), one epoch per training.
**Answer:** `data`, `group`, `sft` and `augment` grow linearly or better; `pretrain` and `train` grow as users x
items (exponent about 1.7 here), by design of the full-softmax loss and full-ranking evaluation; memory stays
small (every stage at 1M users / 100k items peaks at about 2 GiB RSS). Light commands start in about 0.3 s
because torch and transformers are imported only where a stage runs.
""",
        [scaling_block("scaling.json"), startup_block("startup.json")],
    ),
    Section(
        "Does item text help, and does TSLRec's SFT add to it?",
        """
The paper's language model never reads an item's words: its enhanced table is the LM's reading of each item's
pretrain embedding (section 2). Here it reads the item text (docs/item-text.md) in two ways: *text alone* is
the LM's reading of each item's text with no SFT (`train.source=text`, the control), and *TSLRec SFT with
titles* is TSLRec's SFT with each item's title in the prompt (`sft.item_text=title`). On Beauty the text-alone
table is fed to every fusion on SASRec and FMLP-Rec and its fusion is chosen on validation NDCG@10 alone; the
SFT-with-titles table then goes through the fusion the text-alone cell got, so that *p vs text alone* compares
the two tables under one fusion. On ML-1M and Yelp each backbone keeps its Beauty-chosen fusions, fixed before
the runs (`benchmarks/text.py --cells`; docs/item-text.md). **Answer:** computed from the results files below:
the target fixed before the runs, whether the files meet it and, if not, what is missing; then a verdict per
dataset and backbone.
""",
        [beside_table2_block(), text_target_block()] + [text_dataset_block(ds) for ds in TEXT_DATASETS] +
        [text_profile_block(), text_cost_block(), attention_kernel_block(),
         attention_kernel_block("attention-kernel-minilm-nodrop.json", NODROP_TITLE), lm_dropout_block(), dropout_draws_block(),
         run_all_text_block(), run_all_text_block("run-all-beauty-title-repeat.json", again=True),
         run_all_text_block("run-all-beauty-title-jobs1.json", jobs=1)],
    ),
    Section(
        "The paper's LLM baselines beside TSLRec",
        """
The paper ranks TSLRec against four recommenders that use a language model as the recommender itself: P5 and
POD (T5 on prompts), LlamaRec (an LLM reordering a retriever's candidates) and E4SRec (an LLM tuned to predict
the next item). Beside the paper's published figures: our Base and TSLRec rows (Table 2's runs) and, for each
baseline, what `llm-baselines-<dataset>.json` records (`python -m benchmarks.llm_baselines`;
docs/llm-baselines.md): its measured figures where it ran, else its measured cost per epoch on this machine
class and what would run it. A one-epoch E4SRec run on Beauty (seed 42, MiniLM-L6) is in section 3.
""",
        [llm_baselines_block(EXPERIMENTS)],
    ),
]
