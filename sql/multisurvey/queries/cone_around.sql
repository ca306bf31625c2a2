-- The objects within a radius of one object's position (object.meanra, meandec): the cone search of an
-- object page's "nearby objects", the object itself included (separation 0). separation is the
-- great-circle distance from the centre in arcseconds, by the same exact formula as dbp's $cone.
--   db.query("cone_around", {"oid": 1234, "radius": 30}).find_all(sort=[("separation", 1)], paginate=False)
-- oid: the centre object's id; radius: in arcseconds (a negative one finds nothing); sid (optional): the
-- survey whose row of that oid is the centre, or null (the default) for the lowest sid that has the oid.
-- An oid that no object has gives no rows. Candidates come from a band of declination on the object's
-- meandec index, then the exact distance decides.
-- key: oid, sid
-- not null: oid, sid, tid, meanra, meandec, firstmjd, lastmjd, n_det, separation
-- optional: sid
-- params: oid integer, radius float, sid integer
-- position: meanra, meandec
WITH centre AS (
    SELECT meanra, meandec, radians(meanra) AS lam, cos(radians(meandec)) AS cos_d,
           sin(radians(meandec)) AS sin_d
    FROM object
    WHERE oid = %(oid)s AND (sid = %(sid)s::numeric OR %(sid)s::numeric IS NULL)
    ORDER BY sid
    LIMIT 1
)
SELECT o.oid, o.sid, o.tid, o.meanra, o.meandec, o.firstmjd, o.lastmjd, o.n_det, s.separation
FROM centre AS c
JOIN object AS o
  ON o.meandec BETWEEN c.meandec - %(radius)s::float8 / 3600.0 * 1.000001
                   AND c.meandec + %(radius)s::float8 / 3600.0 * 1.000001
CROSS JOIN LATERAL (
    SELECT degrees(atan2(
               sqrt(power(cos(radians(o.meandec)) * sin(radians(o.meanra) - c.lam), 2)
                    + power(c.cos_d * sin(radians(o.meandec))
                            - c.sin_d * cos(radians(o.meandec)) * cos(radians(o.meanra) - c.lam), 2)),
               c.sin_d * sin(radians(o.meandec))
               + c.cos_d * cos(radians(o.meandec)) * cos(radians(o.meanra) - c.lam))) * 3600.0 AS separation
) AS s
WHERE s.separation <= %(radius)s::float8
