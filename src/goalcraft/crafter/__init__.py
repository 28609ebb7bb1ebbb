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
  its nights in a sealed tunnel used as mine and workshop. Measured over 24 videos of 1000 steps
  (``steps_per_video=1000``, seeds 0 and 1): 14-18 different achievements per video (free play: 8-13),
  and per video on average these narrated unlocks (goal clips the transcript miner finds): stone 17,
  placed stone 12, drink 9, wake up 9, wood 7, zombie 7, cow 6, table 3, furnace 2.3, wood sword 2.1,
  wood pickaxe 1.9, stone sword 1.9, stone pickaxe 1.8, coal 1.7, sapling 1.5, plant 1.0, iron 0.8.
  With a quarter of the videos held out for testing, 56 videos give every one of the 12 commonest
  achievements 20 or more held-out goal clips, 72-80 videos the 14 commonest (bootstrap over those
  videos; ``bench/crafter_study_counts.py`` measures all this). It also dies less than the free play (a dead player's episode is replayed in another
  world, up to 8 times, so deaths cost generation time).
* ``trial_targets=TRIAL_TARGETS + STUDY_TRIAL_TARGETS``: trials also pursue stone, coal, iron, a
  stone pickaxe and sword, placed stone, a furnace and a defeated zombie
  (:data:`~goalcraft.crafter.tasks.STUDY_TRIAL_TARGETS`, played by ``VariedAgent``); give them
  ``trial_max_steps=300`` or more (measured: 12 of 12 trials succeed within 300 steps for each study
  target but iron, 11 of 12; within 250 steps 16 of 16, coal and iron 14 of 16).
* ``trial_pace_steps=24``: a trial's target unlock waits until 24 steps after any other unlock, so
  its goal clip (the 16 frames before it) shows one success; without it a trial's prerequisites
  (the table before the pickaxe) share the clip with the target in 7 of 10 study trials.
  ``video_pace_steps`` does the same for every unlock in the videos, at a cost (measured in
  docs/results.md): the varied player unlocks something every ~1.2 s, and most of its narrated goal
  clips show two successes.
* ``workers=2`` (or more): episodes are played and encoded in that many processes (forkserver, or
  spawn where there is none: call it from a script under ``if __name__ == "__main__":``); the files
  are byte-identical for any number of workers. With ``workers=2`` a 1000-step varied video took
  9.5 s of wall time on a busy 2-core machine (free play: 23 s, most of it replays after deaths);
  world generation (0.75 s an episode), the game's rendering and the encoding dominate.

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
    trials/<id>/actions.jsonl (+ actions.pkl in the STEVE-1 layout), trajectories/<video id>/actions.jsonl,
    trajectories/<explore id>/          every episode's actions, rewards and unlocks (record_actions), and
                                        exploratory episodes in STEVE-1's episode layout
                                        (goalcraft.data.trajectories, goalcraft.crafter.explore)

Everything is a pure function of the arguments: the same ``seed`` gives byte-identical files in any
process (see :mod:`goalcraft.crafter.deterministic_env` for the one thing in Crafter that would
otherwise vary).
"""
