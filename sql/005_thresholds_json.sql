-- txflow state store schema, version 5: the thresholds of the run identity (`run_meta` key
-- `run.thresholds`) and of each backtest variant (`variants.thresholds`) as their canonical
-- JSON, e.g. {"upgrade-min-merchant-txns":50000,"upgrade-count-percentile":"0.9",...},
-- instead of the earlier one-line text `PatId1 N>50000 n>=p0.9 W<=p0.1; PatId2 n>=80 avg<23;
-- PatId3 F>100`. The text's numbers are the JSON's values as written (counts as integers,
-- decimals without trailing zeros), so the conversion only replaces the words around them.
-- Portable SQL: SQLite and PostgreSQL read it as is.

UPDATE run_meta
SET value = replace(replace(replace(replace(replace(replace(value,
        'PatId1 N>', '{"upgrade-min-merchant-txns":'),
        ' n>=p', ',"upgrade-count-percentile":"'),
        ' W<=p', '","upgrade-weight-percentile":"'),
        '; PatId2 n>=', '","child-min-txns":'),
        ' avg<', ',"child-max-avg-amount":"'),
        '; PatId3 F>', '","dei-min-female-customers":') || '}'
WHERE key = 'run.thresholds' AND value LIKE 'PatId1 N>%';

UPDATE variants
SET thresholds = replace(replace(replace(replace(replace(replace(thresholds,
        'PatId1 N>', '{"upgrade-min-merchant-txns":'),
        ' n>=p', ',"upgrade-count-percentile":"'),
        ' W<=p', '","upgrade-weight-percentile":"'),
        '; PatId2 n>=', '","child-min-txns":'),
        ' avg<', ',"child-max-avg-amount":"'),
        '; PatId3 F>', '","dei-min-female-customers":') || '}'
WHERE thresholds LIKE 'PatId1 N>%';
