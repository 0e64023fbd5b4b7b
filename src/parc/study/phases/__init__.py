"""The Parc paper's analysis, behavioural phases (surprisal vs n-gram statistics per checkpoint):

    stimuli.py                the stimulus-set file format (.stims + .tsv sidecar + .origins.json)
    stimulus_sets.py          building NaWoCo-style sets from held-out text (parc.stimuli)
    surprisal.py              per-word surprisal of a model, batched, with the paper's conventions
    surprisal_reference.py    the paper's one-stimulus-at-a-time loop (the reference the tests compare with)
    surprisal_checkpoints.py  scoring every checkpoint into surprisal.parquet and the paper's TSVs (parc.surprisal)
    ngram_index.py            infini-gram suffix array over the training sequences
    ngram_backoff.py          stupid-backoff n-gram log-probabilities
    ngrams.py                 which sequences are counted, coverage, ngrams.parquet (parc.ngrams)
    context_similarity.py     fastText context similarity (gensim)
    statistics.py             correlations, regressions, agreement, phase peaks (parc.phases)
    figures.py                their figures, through parc.study.plots
    pipeline.py               mini-Parc: train, stimuli, surprisal, n-grams, phases in one command (parc.study)

May import the study root, sources/ and the packages below the study layer; not evaluations/ or dynamics/.
"""
