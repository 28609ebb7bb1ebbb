-- The latest run's metrics, one row per instruction set and metric, as the HTML report's metric
-- table: its direction (↑ higher is better, ↓ lower, · a property), the chance level, every entry
-- side by side (<entry>_value with its 95% CI, seed std and fraction of the training-mean oracle; the
-- prior sampled as STEVE-1 samples it, and :deterministic its mode; the oracles as upper bounds),
-- then the paired difference goal_predictor − mineclip_prior against the sampled prior
-- (sampled_difference, its CI, sampled_better) and against its mode (deterministic_…); *_better
-- names the entry the CI says is better (NULL: the CI includes 0, or the metric has no direction).
WITH latest AS (SELECT run_id FROM eval_runs ORDER BY timestamp DESC, run_id DESC LIMIT 1),
s AS (SELECT s.instruction_set, s.metric, s.direction, s.chance, s.entry, s.value, s.ci_low, s.ci_high,
             s.seed_std, s.fraction_of_oracle
      FROM eval_summary s JOIN latest USING (run_id) WHERE s.mode <> 'text_probe'),
d AS (PIVOT (SELECT d.instruction_set, d.metric, d.mode_b, d.difference, d.ci_low, d.ci_high, d.better
             FROM eval_differences d JOIN latest USING (run_id))
      ON mode_b USING first(difference) AS difference, first(ci_low) AS difference_ci_low,
                      first(ci_high) AS difference_ci_high, first(better) AS better
      GROUP BY instruction_set, metric)
SELECT * FROM (
  PIVOT s ON entry USING first(value) AS value, first(ci_low) AS ci_low, first(ci_high) AS ci_high,
                         first(seed_std) AS seed_std, first(fraction_of_oracle) AS fraction_of_oracle
  GROUP BY instruction_set, metric, direction, chance
) p LEFT JOIN d USING (instruction_set, metric)
ORDER BY instruction_set, metric
