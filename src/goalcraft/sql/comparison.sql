-- The latest run's metrics, one row per instruction set and metric: its direction (↑ higher is
-- better, ↓ lower), the chance level, every model side by side (<entry>_value with its 95% CI;
-- the prior sampled as STEVE-1 samples it, and :deterministic its mode; the oracles as upper
-- bounds), then the paired difference goal_predictor − mineclip_prior (sampled) with its CI and the
-- model the CI says is better (NULL: the CI includes 0).
WITH latest AS (SELECT run_id FROM eval_runs ORDER BY timestamp DESC, run_id DESC LIMIT 1),
s AS (SELECT s.instruction_set, s.metric, s.direction, s.chance, s.entry, s.value, s.ci_low, s.ci_high
      FROM eval_summary s JOIN latest USING (run_id) WHERE s.mode <> 'text_probe'),
d AS (SELECT d.instruction_set, d.metric, d.difference, d.ci_low AS difference_ci_low,
             d.ci_high AS difference_ci_high, d.better
      FROM eval_differences d JOIN latest USING (run_id) WHERE d.mode_b = 'sampled')
SELECT * FROM (
  PIVOT s ON entry USING first(value) AS value, first(ci_low) AS ci_low, first(ci_high) AS ci_high
  GROUP BY instruction_set, metric, direction, chance
) p LEFT JOIN d USING (instruction_set, metric)
ORDER BY instruction_set, metric
