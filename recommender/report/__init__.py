"""`vpa-fleet report`: savings and risk of VPAs against their pods' requests and usage."""
