-- The latest run's most-confused task pairs per model, mode and instruction set: highest mean cosine
-- between the z_goal of two different tasks (each unordered pair once); model success_visuals: the
-- held-out goal clips of two tasks (pairs where a task has no clip are left out).
WITH latest AS (SELECT run_id FROM eval_runs ORDER BY timestamp DESC, run_id DESC LIMIT 1),
pairs AS (
  SELECT p.model, p.mode, p.instruction_set, p.task_a, p.task_b, p.cosine,
         row_number() OVER (PARTITION BY p.model, p.mode, p.instruction_set
                            ORDER BY p.cosine DESC, p.task_a, p.task_b) AS rank
  FROM eval_per_pair p JOIN latest USING (run_id)
  WHERE p.task_a < p.task_b AND p.cosine IS NOT NULL
)
SELECT model, mode, instruction_set, rank, task_a, task_b, cosine FROM pairs WHERE rank <= 10
ORDER BY model, mode, instruction_set, rank
