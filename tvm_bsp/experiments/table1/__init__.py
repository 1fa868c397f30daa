"""Table I: BSP against unstructured, ESE-style and magnitude pruning at RTMobile's rates.

- :mod:`.run`: the driver (:func:`~.run.run_experiment`); :mod:`.config` its settings;
- :mod:`.work`: the work directory; :mod:`.dense`: the dense model (trained or shipped);
- :mod:`.rows`: one pruned row a rate; :mod:`.parallel`: chains in parallel processes;
- :mod:`.report`: the contract records, the markdown table and the plot;
- :mod:`.carry`: finished rows carried over sessions; :mod:`.ship`: the shipped models.
"""
