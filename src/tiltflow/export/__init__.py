"""Writers of a tiltflow tomogram set for other programs: RELION 5 (:mod:`.relion5`) and IMOD
(:mod:`.imod`). Each converts the RELION 4 projection matrices exactly where the target format
can represent them, and reports the largest reprojection change where it cannot."""
