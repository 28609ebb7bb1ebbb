-- The latest run's most-confused task pairs per model and instruction set: highest mean cosine
-- between the z_goal of two different tasks (each unordered pair once).
WITH latest AS (SELECT run_id FROM eval_runs ORDER BY timestamp DESC, run_id DESC LIMIT 1),
pairs AS (
  SELECT p.model, p.instruction_set, p.task_a, p.task_b, p.cosine,
         row_number() OVER (PARTITION BY p.model, p.instruction_set ORDER BY p.cosine DESC, p.task_a, p.task_b) AS rank
  FROM eval_per_pair p JOIN latest USING (run_id)
  WHERE p.task_a < p.task_b
)
SELECT model, instruction_set, rank, task_a, task_b, cosine FROM pairs WHERE rank <= 10
ORDER BY model, instruction_set, rank
