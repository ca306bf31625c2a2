-- An object's detections in every survey, one row each: detection's shared columns (when, where, which
-- band), then the survey's own columns from ztf_detection (ZTF, sid 0) or lsst_detection (LSST), matched
-- on oid, measurement_id and sid, and NULL for the other survey. has_stamp comes from either.
--   db.query("detections", {"oid": 1234}).find_all({"sid": 1}, sort=[("mjd", 1)], paginate=False)
-- oid: the object's id (an integer); an oid that two surveys share gives both surveys' detections (filter
-- on sid to keep one).
-- key: oid, sid, measurement_id
-- not null: oid, sid, measurement_id, mjd, ra, dec
-- params: oid integer
-- position: ra, dec
SELECT d.oid, d.sid, d.measurement_id, d.mjd, d.ra, d."dec", d.band,
       z.pid, z.magpsf, z.sigmapsf, z.magpsf_corr, z.sigmapsf_corr, z.sigmapsf_corr_ext, z.diffmaglim,
       z.isdiffpos, z.rb, z.drb, z.corrected, z.dubious, z.parent_candid,
       l.visit, l.detector, l."psfFlux", l."psfFluxErr", l."scienceFlux", l."scienceFluxErr", l.snr,
       l.reliability, l.extendedness, l."isNegative", l."isDipole", l."pixelFlags",
       COALESCE(z.has_stamp, l.has_stamp) AS has_stamp
FROM detection AS d
LEFT JOIN ztf_detection AS z
       ON z.oid = d.oid AND z.measurement_id = d.measurement_id AND z.sid = d.sid
LEFT JOIN lsst_detection AS l
       ON l.oid = d.oid AND l.measurement_id = d.measurement_id AND l.sid = d.sid
WHERE d.oid = %(oid)s
