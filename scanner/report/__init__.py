"""Reports: the formats and the parts every report shares (:mod:`.common`), rows written as the
scan goes (:mod:`.stream`), whole documents (:mod:`.render`), the HTML audit report
(:mod:`.html`), a calibration in words (:mod:`.calibration`), and the terminal's colour, log
levels and progress bar (:mod:`.terminal`). Reports read results and decisions; they decide
nothing."""
