"""The paper's published Table 2 (TSLRec.md, section 5.1), as data: what `tslrec report` compares with.

Values are HR@5, HR@10, NDCG@5, NDCG@10 per (dataset, backbone, variant). The paper's protocol:
RecBole sequential full-sort (history NOT masked), Llama2-13B as the LLM, lr 1e-4, batch 1024,
dimension 256; a star marks p <= 0.05 against the best baseline (two-sample t-test).
LLM baselines are keyed (method, "-") with the method in lower case, as `tslrec report` names E4SRec.
"""
from __future__ import annotations

PROTOCOL = "history not masked (RecBole full-sort), Llama2-13B, lr 1e-4, batch 1024, dim 256"
METRIC_ORDER = ("hr5", "hr10", "ndcg5", "ndcg10")

_ROWS = """
pod      -      0.0185 0.0245 0.0125 0.0146  0.0422 0.0528 0.0291 0.0326  0.0476 0.0564 0.0330 0.0358
p5       -      0.0569 0.0791 0.0403 0.0474  0.2225 0.3131 0.1570 0.1861  0.0289 0.0453 0.0200 0.0252
llamarec -      0.0591 0.0862 0.0405 0.0492  0.1757 0.2836 0.1113 0.1461  0.0416 0.0605 0.0306 0.0367
e4srec   -      0.0527 0.0753 0.0376 0.0448  0.1871 0.2765 0.1234 0.1522  0.0309 0.0473 0.0207 0.0260
gru4rec  base   0.0369 0.0590 0.0267 0.0329  0.2126 0.2912 0.1451 0.1703  0.0201 0.0365 0.0129 0.0182
gru4rec  ci     0.0415 0.0603 0.0274 0.0335  0.2131 0.2957 0.1467 0.1734  0.0224 0.0368 0.0143 0.0189
gru4rec  tslrec 0.0442 0.0648 0.0299 0.0366  0.2147 0.3020 0.1498 0.1781  0.0242 0.0391 0.0152 0.0200
caser    base   0.0259 0.0429 0.0162 0.0217  0.1902 0.2700 0.1282 0.1539  0.0181 0.0325 0.0113 0.0159
caser    ci     0.0264 0.0433 0.0169 0.0223  0.1894 0.2722 0.1293 0.1558  0.0192 0.0350 0.0120 0.0166
caser    tslrec 0.0300 0.0494 0.0187 0.0249  0.1949 0.2762 0.1331 0.1593  0.0215 0.0366 0.0135 0.0183
sasrec   base   0.0551 0.0846 0.0329 0.0424  0.2364 0.3217 0.1631 0.1907  0.0449 0.0637 0.0334 0.0394
sasrec   ci     0.0569 0.0836 0.0354 0.0440  0.2315 0.3257 0.1619 0.1924  0.0467 0.0667 0.0344 0.0408
sasrec   tslrec 0.0585 0.0854 0.0371 0.0458  0.2404 0.3315 0.1670 0.1965  0.0475 0.0685 0.0346 0.0414
fmlprec  base   0.0577 0.0866 0.0361 0.0455  0.2230 0.3172 0.1545 0.1848  0.0491 0.0698 0.0356 0.0422
fmlprec  ci     0.0575 0.0868 0.0365 0.0459  0.2273 0.3123 0.1586 0.1861  0.0511 0.0743 0.0365 0.0439
fmlprec  tslrec 0.0604 0.0852 0.0445 0.0509  0.2341 0.3192 0.1626 0.1901  0.0531 0.0771 0.0373 0.0451
"""
DATASETS = ("beauty", "ml-1m", "yelp")
# The paper's stars (p <= 0.05 vs the best baseline): SASRec+TSLRec on ML-1M (all four metrics);
# FMLP-Rec+TSLRec on Beauty (HR@5, NDCG@5, NDCG@10) and on Yelp (HR@5, HR@10, NDCG@10).
STARS = {("ml-1m", "sasrec", m) for m in METRIC_ORDER} | {("beauty", "fmlprec", m) for m in ("hr5", "ndcg5", "ndcg10")} \
    | {("yelp", "fmlprec", m) for m in ("hr5", "hr10", "ndcg10")}


def _parse() -> dict[tuple[str, str, str], dict[str, float]]:
    out = {}
    for line in _ROWS.strip().splitlines():
        method, variant, *vals = line.split()
        for i, dataset in enumerate(DATASETS):
            out[(dataset, method, variant)] = dict(zip(METRIC_ORDER, map(float, vals[4 * i:4 * i + 4])))
    return out


PAPER_TABLE2: dict[tuple[str, str, str], dict[str, float]] = _parse()   # (dataset, backbone, variant) -> metrics
