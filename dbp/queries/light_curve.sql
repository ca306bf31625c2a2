-- An object's light curve (ALeRCE's /lightcurve): its detections and non-detections, one row each.
-- A detection has its candid and magnitudes; a non-detection has candid NULL and only its limit.
-- key: candid, fid, mjd
-- not null: oid, mjd, fid, detected
-- params: oid text
SELECT oid, candid, mjd, fid, TRUE AS detected, magpsf, sigmapsf, diffmaglim, isdiffpos, ra, "dec"
FROM detection
WHERE oid = %(oid)s
UNION ALL
SELECT oid, NULL, mjd, fid, FALSE, NULL, NULL, diffmaglim, NULL, NULL, NULL
FROM non_detection
WHERE oid = %(oid)s
