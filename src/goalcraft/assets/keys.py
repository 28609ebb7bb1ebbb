"""The asset keys, one name each, for the modules that depend on another stage's assets (an asset
module may not import the module that imports it, and keys are never spelled as strings elsewhere).
tests/test_definitions.py checks every key here names an asset of the code location."""

import dagster as dg

# ingest
CORPUS_MANIFEST = dg.AssetKey("corpus_manifest")
AGENT_TRIALS = dg.AssetKey("agent_trials")
TASK_VOCABULARY = dg.AssetKey("task_vocabulary")
INGEST = [CORPUS_MANIFEST, AGENT_TRIALS]
# clips
VIDEO_CLIPS = dg.AssetKey("video_clips")
# goals
GOAL_CLIPS = dg.AssetKey("goal_clips")
# training
GOAL_SPACE_MODEL = dg.AssetKey("goal_space_model")
STEVE1_PRIOR = dg.AssetKey("steve1_prior")
# embeddings
GOAL_EMBEDDINGS = dg.AssetKey("goal_embeddings")
CLIP_EMBEDDINGS = dg.AssetKey("clip_embeddings")
# predictor
GOAL_PREDICTOR = dg.AssetKey("goal_predictor")
GOAL_ALIGNER = dg.AssetKey("goal_aligner")
# evaluation
GOAL_MODEL_COMPARISON = dg.AssetKey("goal_model_comparison")
GOAL_MODEL_EVALUATION = dg.AssetKey("goal_model_evaluation")
EVALUATION_REPORT = dg.AssetKey("evaluation_report")
# agent
GOAL_POLICY = dg.AssetKey("goal_policy")
GOAL_PREDICTOR_RL = dg.AssetKey("goal_predictor_rl")
AGENT_SUCCESS = dg.AssetKey("agent_success")
