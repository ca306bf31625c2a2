-- ALeRCE's /limit_values: the range of ndet and firstmjd over every object (no row when there are none).
SELECT min(ndet) AS min_ndet, max(ndet) AS max_ndet, min(firstmjd) AS min_firstmjd, max(firstmjd) AS max_firstmjd
FROM object
HAVING count(*) > 0
