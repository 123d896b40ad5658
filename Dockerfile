# CPU image of the GPT-2 explainer, serving on port 8000 as a non-root user.
FROM python:3.11-slim

ARG PRELOAD_MODEL=openai-community/gpt2
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/opt/hf-cache \
    EXPLAINER_MODEL=${PRELOAD_MODEL}

RUN useradd --create-home --uid 1000 explainer
WORKDIR /srv/explainer

# The CPU wheel of torch first, so that the project's pin does not pull GPU packages.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY app ./app
COPY model ./model
COPY templates ./templates
COPY static ./static
# A normal install: the page's templates and static files are package data in site-packages,
# so the source folder is not needed at run time.
RUN pip install . && cd / && rm -rf /srv/explainer/*

# GPT-2 small's weights into the image at build time (checked by loading them): no network at
# run time. With PRELOAD_MODEL empty, the server looks for them at start and falls back to an
# untrained model, said loudly, if it cannot get them.
RUN if [ -n "$PRELOAD_MODEL" ]; then explainer download "$PRELOAD_MODEL"; fi \
    && mkdir -p $HF_HOME && chown -R explainer $HF_HOME

USER explainer
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"
CMD ["explainer", "serve", "--host", "0.0.0.0", "--port", "8000"]
