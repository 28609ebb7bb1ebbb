"""Generate goalcraft's embedded demo corpus by playing the Crafter game.

The real inputs of goalcraft are Minecraft gameplay videos with YouTube transcripts and recorded
agent trials. None of those can ship with the package, so the demo pipeline and the end-to-end tests
run on a corpus made here instead: seeded scripted agents play Crafter (a 2-D Minecraft-like game),
the rendered frames become "gameplay videos", and every achievement the agents unlock is logged as a
ground-truth event. Transcripts are written from that event log the way a narrating player would
speak (around the moment something happens, mixed with filler talk, some lines overlapping), half as
JSON segments and half as YouTube auto-caption WebVTT. Agent trials are written in both layouts the
pipeline reads (goalcraft's ``video.mp4`` and STEVE-1's ``frames.mp4`` + ``len.txt``). Because the
ground truth is known exactly, the pipeline's clip windows, labels and success checks can be tested
against it.

Modules: :mod:`~goalcraft.crafter.tasks` (the task vocabulary, ``tasks.json``),
:mod:`~goalcraft.crafter.deterministic_env` (a Crafter env that is the same in every process),
:mod:`~goalcraft.crafter.agent` (the scripted player and its episodes),
:mod:`~goalcraft.crafter.narration` (transcripts) and :mod:`~goalcraft.crafter.corpus` (the writer,
:func:`~goalcraft.crafter.corpus.generate_crafter_corpus`).

Layout under ``root``::

    manifest.jsonl                      one record per video (MineDojo YouTube-database fields)
    videos/<id>.mp4
    transcripts/<id>.json | <id>.vtt    [{"text", "start", "duration"}] or rolling WebVTT captions
    trials/<trial_id>/video.mp4 + metadata.json
    trials/<episode_id>/frames.mp4 + metadata.json + len.txt
    ground_truth/events.jsonl           every achievement unlock: source_id, source, achievement,
                                        step, frame, time
    tasks.json                          the Crafter task vocabulary (instruction, paraphrases,
                                        narration) for all 22 achievements
    trials/<id>/actions.jsonl (+ actions.pkl in the STEVE-1 layout), trajectories/<video id>/actions.jsonl,
    trajectories/<explore id>/          every episode's actions, rewards and unlocks (record_actions), and
                                        exploratory episodes in STEVE-1's episode layout
                                        (goalcraft.data.trajectories, goalcraft.crafter.explore)

Everything is a pure function of the arguments: the same ``seed`` gives byte-identical files in any
process (see :mod:`goalcraft.crafter.deterministic_env` for the one thing in Crafter that would
otherwise vary).
"""
