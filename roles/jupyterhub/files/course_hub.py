"""The course's hub: who may log in, and servers as Slurm jobs in the course image.

Installed by role jupyterhub beside course_hub_rules.py (the decisions, unit-tested by
course-ops); jupyterhub_config.py imports it. Built on JupyterHub's own authenticators
and batchspawner's SlurmSpawner; it changes only what a course needs:

- logins follow the roster: only names the accounts sync lists may log in (re-read at
  every login), the staff are admins, OAuth/LTI people are matched to course accounts by
  e-mail;
- the spawn page offers the inventory's profiles; each server is a Slurm job under the
  student's pair account (their default account: the pair's QOS caps its GPUs), running
  ``course-run -- batchspawner-singleuser jupyterhub-singleuser`` in the course image;
- a job that waits says why ("your pair's GPU is in use by job N") and is cancelled after
  the spawn timeout with a page that says so; a job that fails at once says so at once.
"""

from __future__ import annotations

import asyncio
import shlex
import time

from batchspawner import JobStatus, SlurmSpawner
from jupyterhub.auth import PAMAuthenticator
from traitlets import Float, List, Unicode

import course_hub_rules as rules

USERS = rules.CourseUsers()


class CourseUsersMixin:
    """Only the accounts sync's users; staff are admins (the list is re-read each time)."""

    async def check_allowed(self, username, authentication=None):  # noqa: ANN001, ANN201
        return USERS.allowed(username)

    def is_admin(self, handler, authentication):  # noqa: ANN001, ANN201
        return USERS.admin(authentication["name"])


class CoursePAMAuthenticator(CourseUsersMixin, PAMAuthenticator):
    """The students' own accounts (PAM) on the login node. An initial password that must
    be changed first (PAM: new token required) gets a page that says how, not "invalid
    password": the hub cannot change passwords (it runs unprivileged)."""

    def authenticate(self, handler, data):  # noqa: ANN001, ANN201
        import pamela
        from tornado import web

        username = data["username"]
        try:
            pamela.authenticate(username, data["password"], service=self.service,
                                encoding=self.encoding)
        except pamela.PAMError as exc:
            self.log.warning("PAM login refused (%s): %s", username, exc)
            if exc.errno == rules.PAM_NEW_AUTHTOK_REQD:
                raise web.HTTPError(403, rules.initial_password_message(username)
                                    ) from None
            return None
        return username


def oauth_authenticator():  # noqa: ANN201
    from oauthenticator.generic import GenericOAuthenticator

    class CourseOAuthenticator(CourseUsersMixin, GenericOAuthenticator):
        """An OAuth 2 / OIDC provider; the claim (an e-mail) names the course account."""

        def user_info_to_username(self, user_info):  # noqa: ANN001, ANN201
            return USERS.username_for(super().user_info_to_username(user_info))

    return CourseOAuthenticator


def lti13_authenticator():  # noqa: ANN201
    from ltiauthenticator.lti13.auth import LTI13Authenticator

    class CourseLTI13Authenticator(CourseUsersMixin, LTI13Authenticator):
        """The course's LMS (LTI 1.3); the username key (an e-mail) names the account."""

        def normalize_username(self, username):  # noqa: ANN001, ANN201
            return USERS.username_for(super().normalize_username(username))

    return CourseLTI13Authenticator


class CourseSlurmSpawner(SlurmSpawner):
    """A server per student as a Slurm job in the course image (see the module's text)."""

    profiles = List(help="The spawn page's profiles (role jupyterhub's jupyterhub_profiles)"
                    ).tag(config=True)
    course_run = Unicode("/usr/local/bin/course-run",
                         help="What runs the server in the course image, inside the job"
                         ).tag(config=True)
    pair_jobs_file = Unicode("/var/lib/course-ops/pair-usage/hub.json",
                             help="every pair's running GPU jobs (role slurm's timer)"
                             ).tag(config=True)
    image_file = Unicode("/etc/course-ops/course-image",
                         help="The default course image (tag=...), written by provision"
                         ).tag(config=True)
    req_image_tag = Unicode("", help="The image tag the job runs (its comment names it)")
    queue_timeout = Float(600, help="Seconds a job may wait before it is cancelled"
                          ).tag(config=True)
    watch_interval = Float(3, help="Seconds between looks at a starting server's job"
                           ).tag(config=True)

    def _profiles(self) -> list[rules.Profile]:
        return [rules.Profile.parse(p) for p in self.profiles]

    def _options_form_default(self) -> str:
        return rules.profiles_form(self._profiles())

    def options_from_form(self, formdata):  # noqa: ANN001, ANN201
        return {"profile": rules.chosen(self._profiles(), formdata).name}

    def cmd_formatted_for_batch(self) -> str:
        return " ".join([self.course_run, "--image", shlex.quote(self.req_image_tag), "--",
                         super().cmd_formatted_for_batch()])

    async def _squeue(self, *args: str) -> str:
        """squeue as the student (the sudo rule's own form), never raising."""
        cmd = " ".join([self.exec_prefix.format(username=self.user.name), "squeue", "-h",
                        *(shlex.quote(a) for a in args)])
        try:
            return await self.run_command_quiet(cmd)
        except RuntimeError:
            return ""

    async def run_command_quiet(self, cmd: str) -> str:
        proc = await asyncio.create_subprocess_shell(
            cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        return out.decode(errors="replace").strip()

    async def _pair_gpu_jobs(self) -> list[str]:
        account = await self._squeue("-j", self.job_id, "-o", "%a")
        if not account:
            return []
        listing = await self._squeue("-A", account.splitlines()[0], "-t", "RUNNING",
                                     "-o", "%i|%T|%b")
        # Slurm shows the student only their own jobs (PrivateData): the partner's job that
        # holds the GPU is in the controller's per-minute copy for the hub
        return rules.pair_gpu_jobs(listing, self.job_id) or rules.hub_file_jobs(
            self.pair_jobs_file, account.splitlines()[0], self.job_id)

    async def start(self):  # noqa: ANN201
        profile = rules.chosen(self._profiles(),
                               {"profile": [self.user_options.get("profile", "")]}
                               if self.user_options.get("profile") else {})
        for key, value in profile.slurm().items():
            setattr(self, f"req_{key}", value)
        self.req_image_tag = rules.default_tag(self.image_file)
        self._started = time.monotonic()
        self._message = "Submitting your server's job to Slurm"
        # batchspawner 1.3 waits for the server's port without looking at the job again: a
        # job that ends before its server answers (course-run refused the image, the node
        # failed) would hold the page until the timeout. Watch the job beside it.
        starting = asyncio.ensure_future(super().start())
        job, gone = "", 0
        try:
            while True:
                done, _ = await asyncio.wait({starting}, timeout=self.watch_interval)
                if done:
                    return starting.result()
                job = self.job_id or job
                if time.monotonic() - self._started > self.queue_timeout:
                    jobs = await self._pair_gpu_jobs()
                    await self.stop(now=True)
                    raise RuntimeError(rules.timeout_message(job, jobs, self.queue_timeout))
                state = await self._squeue("-j", job, "-t", "all", "-o", "%T") if job else "x"
                gone = gone + 1 if not rules.job_alive(state) else 0
                if gone >= 2:  # twice: one empty answer may be the controller's hiccup
                    raise RuntimeError(await self._failure(job))
        except RuntimeError as exc:
            if "disappeared" not in str(exc):
                raise
            raise RuntimeError(await self._failure(job or self.job_id)) from None
        finally:
            if not starting.done():
                starting.cancel()

    async def _failure(self, job: str) -> str:
        job = job or "?"
        line = await self._squeue("-j", job, "-t", "all", "-o", "%T|%r|%N|%k")
        state, reason, node, comment = (line.split("|", 3) + ["", "", "", ""])[:4]
        if state in ("PENDING", "RUNNING"):
            await self.stop(now=True)
        self.clear_state()
        return rules.failure_message(job, state, reason, node, comment)

    async def progress(self):  # noqa: ANN201
        while True:
            if self.state_isrunning():
                yield {"message": "Your server's job runs; the course image is starting"}
                return
            if self.state_ispending():
                reason = await self._squeue("-j", self.job_id, "-o", "%r")
                jobs = await self._pair_gpu_jobs() if "PerAccount" in reason else []
                waited = time.monotonic() - getattr(self, "_started", time.monotonic())
                yield {"message": rules.pending_message(reason, jobs, waited,
                                                        self.queue_timeout)}
            elif not self.job_id:
                yield {"message": "Submitting your server's job to Slurm"}
            await asyncio.sleep(2)

    async def poll(self):  # noqa: ANN201
        status = await self.query_job_status()
        if status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.UNKNOWN):
            return None
        self.clear_state()
        return 1
