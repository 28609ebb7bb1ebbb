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
:mod:`~goalcraft.crafter.agent` (the scripted players and their episodes),
:mod:`~goalcraft.crafter.narration` (transcripts) and :mod:`~goalcraft.crafter.corpus` (the writer,
:func:`~goalcraft.crafter.corpus.generate_crafter_corpus`).

The demo corpus (the defaults) is small and quick: 300-step videos of free play
(:class:`~goalcraft.crafter.agent.ScriptedAgent`, mostly wood, water, saplings and a few tools) and
trials cycling through :data:`~goalcraft.crafter.tasks.TRIAL_TARGETS`. A study corpus, where a dozen
or more achievements each need many held-out goal clips, takes three keyword arguments of
:func:`~goalcraft.crafter.corpus.generate_crafter_corpus`:

* ``video_agent="varied"``: the videos are played by :class:`~goalcraft.crafter.agent.VariedAgent`,
  which works through a curriculum of errands (the achievement unlocked least often first) and spends
  its nights in a sealed tunnel used as mine and workshop. In 1000-step videos (``steps_per_video=1000``)
  it unlocks 15-17 different achievements; 8-11 of them at least 3 times per video on average, and
  every narrated unlock is a goal clip (counts in docs/results.md's study section, or measure them
  with ``summary.unlocks``). It dies in fewer episodes than the free play does (a dead player's episode
  is replayed in another world, up to 8 times, so deaths cost generation time).
* ``trial_targets=TRIAL_TARGETS + STUDY_TRIAL_TARGETS``: trials also pursue stone, coal, iron, a
  stone pickaxe and sword, placed stone, a furnace and a defeated zombie
  (:data:`~goalcraft.crafter.tasks.STUDY_TRIAL_TARGETS`, played by ``VariedAgent``); give them
  ``trial_max_steps=300`` or more (measured: 12 of 12 trials succeed within 300 steps for each study
  target but iron, 11 of 12).
* ``workers=2`` (or more): episodes are played and encoded in that many processes (forkserver, or
  spawn where there is none: call it from a script under ``if __name__ == "__main__":``); the files
  are byte-identical for any number of workers. A 1000-step varied video takes about 10 s on one core
  (world generation, the game's rendering and the encoding dominate; deaths add replays).

With the defaults the corpus is byte-identical to what it was before these options existed.

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

Everything is a pure function of the arguments: the same ``seed`` gives byte-identical files in any
process (see :mod:`goalcraft.crafter.deterministic_env` for the one thing in Crafter that would
otherwise vary).
"""
