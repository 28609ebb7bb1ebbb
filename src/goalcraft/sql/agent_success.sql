-- The latest agent-success run: per goal source (model) and guidance scale, the success rate over
-- every task (task = '(all)') and per task, with its Wilson 95% interval (z = 1.96), the mean steps
-- to success and the mean number of off-target achievements. guidance is NULL for the scripted agent.
WITH latest AS (SELECT run_id FROM agent_success ORDER BY timestamp DESC, run_id DESC LIMIT 1),
g AS (
  SELECT model, guidance, coalesce(task, '(all)') AS task, count(*) AS episodes,
         sum(success::INTEGER) AS successes, avg(CASE WHEN success THEN steps END) AS mean_steps_to_success,
         avg(off_target) AS mean_off_target
  FROM agent_success JOIN latest USING (run_id)
  GROUP BY GROUPING SETS ((model, guidance), (model, guidance, task))
),
w AS (
  SELECT *, successes / episodes AS success_rate, 1.959964 AS z FROM g
)
SELECT model, guidance, task, episodes, successes, success_rate,
       greatest(0, (success_rate + z * z / (2 * episodes)
                    - z * sqrt(success_rate * (1 - success_rate) / episodes + z * z / (4 * episodes * episodes)))
                   / (1 + z * z / episodes)) AS ci_low,
       least(1, (success_rate + z * z / (2 * episodes)
                 + z * sqrt(success_rate * (1 - success_rate) / episodes + z * z / (4 * episodes * episodes)))
                / (1 + z * z / episodes)) AS ci_high,
       mean_steps_to_success, mean_off_target
FROM w
ORDER BY task = '(all)' DESC, task, model, guidance NULLS FIRST
