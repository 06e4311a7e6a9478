"""The web dashboard that ``lockstep run`` serves at ``/`` (see ``lockstep.dashboard.app``)."""
