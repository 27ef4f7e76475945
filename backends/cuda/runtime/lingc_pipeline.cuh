// Pipeline stages across processes (part of lingc_runtime.cu): a program compiled with --stages N is
// N programs, one per stage; each runs as one process on one GPU (rank = stage), launched in the
// torchrun convention (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). STAGE_CHAIN (JSON,
// ir/stages.ts's chain) says where each stage input comes from: a graph input, which every rank
// reads itself, or a result of an earlier stage, received over NCCL. A tensor travels as a header
// (dtype, rank, dims) and its bytes. Graph outputs made by earlier stages are gathered on the last
// rank (run); in generation each rank keeps its own layers' KV cache and the last rank broadcasts
// the chosen tokens. Chunked prefill runs the decode graph on chunks of the sequence: while stage k
// works on chunk c, stage k-1 works on chunk c+1. Transfers run on a stream of their own (the link),
// ordered against the compute stream by events, so a send waiting for its receiver holds up neither
// the sender's next chunk nor its host; the host waits only for headers.

struct StageIn {
  std::string name;    // the stage function's parameter
  std::string input;   // a graph input (stage < 0), or
  int stage = -1;      // the stage whose result it is
  std::string result;  // ... and which result
};
struct StageOut {
  std::string name;  // the graph output
  int stage;
  std::string result;
};
struct StageGraph {
  std::vector<std::vector<StageIn>> inputs;  // per stage
  std::vector<StageOut> outputs;
};

class Pipeline {
 public:
  int rank = 0, world = 1;
  long vocab = 0;
  Runtime* rt = nullptr;
  Nccl nccl;
  NcclCommHandle comm = nullptr;
  std::map<std::string, StageGraph> graphs;
  void* scratch = nullptr;  // headers and broadcasts (device)
  cudaStream_t link = nullptr;  // every NCCL call runs here
  cudaEvent_t computed = nullptr, linked = nullptr;

  int last() const { return world - 1; }

  static int env_int(const char* name) {
    const char* v = std::getenv(name);
    if (!v || !*v) fail("this program is stage %d of a %d-stage pipeline and runs as one process per stage: %s is not set (launch with 'lingc run|generate --backend cuda --stages %d', torchrun, mpirun or srun; see the folder's README)", STAGE_INDEX, STAGE_COUNT, name, STAGE_COUNT);
    char* end = nullptr;
    const long x = std::strtol(v, &end, 10);
    if (*end || x < 0 || x > 1 << 20) fail("%s=%s is not a non-negative integer", name, v);
    return (int)x;
  }

  /** Before the Runtime starts: checks this process's place in the launch and picks its GPU. */
  void select_device() {
    rank = env_int("RANK");
    world = env_int("WORLD_SIZE");
    if (world != STAGE_COUNT) fail("WORLD_SIZE=%d, but the program has %d stages (one process per stage)", world, STAGE_COUNT);
    if (rank != STAGE_INDEX) fail("RANK=%d runs stage %d's program (lingc_stage%d); this is stage %d's", rank, rank, rank, STAGE_INDEX);
    const int local = env_int("LOCAL_RANK");
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
      std::fprintf(stderr, "lingc_model: error: no CUDA device\n");
      std::exit(3);
    }
    if (local >= n) fail("LOCAL_RANK=%d, but this machine has %d GPU(s): each stage needs a GPU of its own", local, n);
    CK(cudaSetDevice(local));
    parse_chain();
  }

  void parse_chain() {
    const Json j = parse_json(STAGE_CHAIN, "the program's stage chain");
    const Json* v = j.get("vocab");
    vocab = v ? (long)v->num : 0;
    const Json* gs = j.get("graphs");
    if (!gs) fail("the program's stage chain names no graphs");
    for (auto& kv : gs->obj) {
      StageGraph& g = graphs[kv.first];
      for (auto& st : kv.second.get("stages")->arr) {
        g.inputs.emplace_back();
        for (auto& in : st.arr) {
          StageIn s;
          s.name = in.get("name")->str;
          if (const Json* x = in.get("input")) s.input = x->str;
          else {
            s.stage = (int)in.get("stage")->num;
            s.result = in.get("result")->str;
          }
          g.inputs.back().push_back(s);
        }
      }
      for (auto& o : kv.second.get("outputs")->arr) g.outputs.push_back({o.get("name")->str, (int)o.get("stage")->num, o.get("result")->str});
    }
  }

  /** Joins the others: rank 0 makes NCCL's id and hands it out over TCP at MASTER_ADDR:MASTER_PORT. */
  void connect(Runtime& runtime) {
    rt = &runtime;
    if (const char* err = nccl.load()) fail("NCCL could not be loaded (%s); a pipeline of several stages needs libnccl.so.2", err);
    const char* addr = std::getenv("MASTER_ADDR");
    if (!addr || !*addr) addr = "127.0.0.1";
    int port = env_int("MASTER_PORT");
    // Under torchrun's agent store the agent already listens on MASTER_PORT: use the next port.
    const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
    if (agent && !std::strcmp(agent, "True")) port += 1;
    NcclUniqueId id;
    if (rank == 0) {
      nccl_check(nccl.get_unique_id(&id), "ncclGetUniqueId");
      share_id(addr, port, &id);
    } else {
      fetch_id(addr, port, &id);
    }
    nccl_check(nccl.comm_init_rank(&comm, world, id, rank), "ncclCommInitRank");
    CK(cudaMalloc(&scratch, 4096));
    CK(cudaStreamCreateWithFlags(&link, cudaStreamNonBlocking));
    CK(cudaEventCreateWithFlags(&computed, cudaEventDisableTiming));
    CK(cudaEventCreateWithFlags(&linked, cudaEventDisableTiming));
  }

  /** The link's next work waits for what the compute stream has queued so far, and the other way round. */
  void link_after_compute() {
    CK(cudaEventRecord(computed, rt->stream));
    CK(cudaStreamWaitEvent(link, computed, 0));
  }
  void compute_after_link() {
    CK(cudaEventRecord(linked, link));
    CK(cudaStreamWaitEvent(rt->stream, linked, 0));
  }

  void nccl_check(int r, const char* what) {
    if (r != 0) fail("%s failed: %s (NCCL error %d)", what, nccl.error_string ? nccl.error_string(r) : "?", r);
  }

  // --- one tensor from rank to rank

  /** Sends a tensor the compute stream made (queued on the link after it; it must live until the link is done with it). */
  void send(const DevTensor& given, int peer) {
    DevTensor t = Runtime::has_room(given) ? rt->packed(given) : given;
    link_after_compute();
    long long h[10] = {t.dtype, (long long)t.shape.size()};
    if (t.shape.size() > 8) fail("cannot send a tensor of rank %zu", t.shape.size());
    for (size_t d = 0; d < t.shape.size(); ++d) h[2 + d] = t.shape[d];
    // Headers go through a stream-ordered copy into their own buffer (freed once sent).
    void* dh;
    CK(cudaMallocAsync(&dh, sizeof h, link));
    CK(cudaMemcpyAsync(dh, h, sizeof h, cudaMemcpyHostToDevice, link));
    nccl_check(nccl.send(dh, sizeof h, Nccl::kBytes, peer, comm, link), "ncclSend");
    CK(cudaFreeAsync(dh, link));
    const size_t bytes = (size_t)t.numel() * dtype_bytes(t.dtype);
    if (bytes) nccl_check(nccl.send(t.ptr, bytes, Nccl::kBytes, peer, comm, link), "ncclSend");
    if (t.ptr != given.ptr) CK(cudaFreeAsync(t.ptr, link));
  }

  /** Receives a tensor (the compute stream's next work waits for it). */
  DevTensor recv(int peer) {
    long long h[10];
    nccl_check(nccl.recv(scratch, sizeof h, Nccl::kBytes, peer, comm, link), "ncclRecv");
    CK(cudaMemcpyAsync(h, scratch, sizeof h, cudaMemcpyDeviceToHost, link));
    CK(cudaStreamSynchronize(link));
    DevTensor t;
    t.dtype = (int)h[0];
    if (h[1] < 0 || h[1] > 8) fail("stage %d sent a malformed tensor header", peer);
    for (int d = 0; d < h[1]; ++d) t.shape.push_back((long)h[2 + d]);
    const size_t bytes = (size_t)t.numel() * dtype_bytes(t.dtype);
    CK(cudaMallocAsync(&t.ptr, std::max<size_t>(bytes, 16), link));
    if (bytes) nccl_check(nccl.recv(t.ptr, bytes, Nccl::kBytes, peer, comm, link), "ncclRecv");
    compute_after_link();
    return t;
  }

  /** n ints in device memory, the same on every rank afterwards: root's. */
  void broadcast_ints(int* dev, long n, int root) {
    link_after_compute();
    nccl_check(nccl.broadcast(dev, dev, (size_t)n * 4, Nccl::kBytes, root, comm, link), "ncclBroadcast");
    compute_after_link();
  }

  /** Every rank waits here until all have come (a broadcast each rank finishes only when all joined it, then a sync). */
  void barrier() {
    for (int root = 0; root < world; ++root) broadcast_ints((int*)scratch, 1, root);
    CK(cudaStreamSynchronize(link));
    CK(cudaStreamSynchronize(rt->stream));
  }

  /** This rank's compute time since the last call: its stage's runs, not the waits for their inputs. */
  double busy_ms() {
    CK(cudaStreamSynchronize(rt->stream));
    double ms = 0;
    for (auto& sp : spans) {
      float t = 0;
      CK(cudaEventElapsedTime(&t, sp.first, sp.second));
      ms += t;
      CK(cudaEventDestroy(sp.first));
      CK(cudaEventDestroy(sp.second));
    }
    spans.clear();
    return ms;
  }
  std::vector<std::pair<cudaEvent_t, cudaEvent_t>> spans;
  bool timing = false;  // bench: record each run's span for busy_ms

  /** Before the process ends: the last transfers done, the communicator closed. */
  void finish() {
    CK(cudaStreamSynchronize(link));
    CK(cudaStreamSynchronize(rt->stream));
    nccl_check(nccl.comm_destroy(comm), "ncclCommDestroy");
  }

  /** Whether this stage's part of `graph` reads graph input `name`. */
  bool reads_input(const std::string& graph, const std::string& name) const {
    for (const StageIn& s : chain(graph).inputs.at(rank))
      if (s.stage < 0 && s.input == name) return true;
    return false;
  }

  const StageGraph& chain(const std::string& graph) const {
    auto it = graphs.find(graph);
    if (it == graphs.end()) fail("the program's stage chain has no graph '%s'", graph.c_str());
    return it->second;
  }

  /**
   * This rank's stage of `graph`: its graph inputs from `given` (the caller's), the rest received
   * from earlier stages; its results sent on to the stages that read them. Returns the graph outputs
   * this stage makes, by output name (the caller owns them); with gather, the last rank also receives
   * every other stage's outputs and the others send theirs and return none.
   */
  std::map<std::string, DevTensor> run(const std::string& graph, const std::map<std::string, DevTensor>& given, bool gather) {
    const StageGraph& g = chain(graph);
    std::map<std::string, DevTensor> in;
    std::vector<DevTensor> received;
    for (const StageIn& s : g.inputs.at(rank)) {
      if (s.stage < 0) {
        auto it = given.find(s.input);
        if (it == given.end()) fail("graph %s: missing input '%s'", graph.c_str(), s.input.c_str());
        in[s.name] = it->second;
      } else {
        received.push_back(recv(s.stage));
        in[s.name] = received.back();
      }
    }
    cudaEvent_t began = nullptr, ended = nullptr;
    if (timing) {
      CK(cudaEventCreate(&began));
      CK(cudaEventCreate(&ended));
      CK(cudaEventRecord(began, rt->stream));  // after the stream's wait for what was received
    }
    std::map<std::string, DevTensor> res = rt->run(graph, in, false);
    if (timing) {
      CK(cudaEventRecord(ended, rt->stream));
      spans.emplace_back(began, ended);
    }
    bool sent = false;
    auto send_result = [&](const std::string& result, int to) {
      send(res.at(result), to);
      sent = true;
    };
    for (int k = rank + 1; k < world; ++k)
      for (const StageIn& s : g.inputs.at(k))
        if (s.stage == rank) send_result(s.result, k);
    std::map<std::string, DevTensor> out;
    for (const StageOut& o : g.outputs) {
      if (o.stage != rank) continue;
      if (gather && rank != last()) send_result(o.result, last());
      else out[o.name] = res.at(o.result);
    }
    if (gather && rank == last())
      for (const StageOut& o : g.outputs)
        if (o.stage != rank) out[o.name] = recv(o.stage);
    // What was sent may share storage with what was received or given (a view): the compute stream,
    // which frees and reuses storage, goes on only after the link's reads. Then results not handed
    // out, and what was received, are freed in its order.
    if (sent) compute_after_link();
    for (auto& kv : res) {
      bool kept = false;
      for (auto& o : out) kept = kept || o.second.ptr == kv.second.ptr;
      if (!kept) rt->free_tensor(kv.second);
    }
    for (auto& t : received) rt->free_tensor(t);
    return out;
  }

 private:
  static int tcp_socket() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) fail("socket: %s", std::strerror(errno));
    return fd;
  }
  static sockaddr_in address(const char* host, int port) {
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    addrinfo hints = {}, *res = nullptr;
    hints.ai_family = AF_INET;
    if (getaddrinfo(host, nullptr, &hints, &res) != 0 || !res) fail("MASTER_ADDR=%s: cannot resolve it", host);
    a.sin_addr = ((sockaddr_in*)res->ai_addr)->sin_addr;
    freeaddrinfo(res);
    return a;
  }
  void share_id(const char* host, int port, const NcclUniqueId* id) {
    const int fd = tcp_socket();
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const sockaddr_in a = address(host, port);  // MASTER_ADDR's interface only
    if (::bind(fd, (sockaddr*)&a, sizeof a) != 0) fail("rank 0 cannot listen on port %d (MASTER_PORT): %s", port, std::strerror(errno));
    if (::listen(fd, world) != 0) fail("listen on port %d: %s", port, std::strerror(errno));
    for (int k = 1; k < world; ++k) {
      const int c = ::accept(fd, nullptr, nullptr);
      if (c < 0) fail("accept on port %d: %s", port, std::strerror(errno));
      if (write(c, id, sizeof *id) != (ssize_t)sizeof *id) fail("sending NCCL's id to a rank failed: %s", std::strerror(errno));
      close(c);
    }
    close(fd);
  }
  void fetch_id(const char* host, int port, NcclUniqueId* id) {
    const sockaddr_in a = address(host, port);
    for (int attempt = 0;; ++attempt) {
      const int fd = tcp_socket();
      if (::connect(fd, (const sockaddr*)&a, sizeof a) == 0) {
        size_t got = 0;
        while (got < sizeof *id) {
          const ssize_t n = read(fd, (char*)id + got, sizeof *id - got);
          if (n <= 0) fail("reading NCCL's id from rank 0 (%s:%d) failed", host, port);
          got += (size_t)n;
        }
        close(fd);
        return;
      }
      close(fd);
      if (attempt >= 1200) fail("rank %d could not reach rank 0 at %s:%d (MASTER_ADDR:MASTER_PORT) within 120 s", rank, host, port);
      usleep(100000);
    }
  }
};

/** The cache inputs of this stage's decode graph (the program's GENERATION lists only its own). */
static std::map<std::string, DevTensor> caches_with_room(Runtime& rt, const GenerationDef& gen, std::map<std::string, DevTensor>& res, long positions) {
  std::map<std::string, DevTensor> cache;
  for (int i = 0; i < gen.ncache; ++i) {
    auto it = res.find(gen.cache[i].output);
    if (it == res.end()) fail("this stage's prefill made no %s for its decode's %s (the graphs were cut at different layers)", gen.cache[i].output, gen.cache[i].input);
    cache[gen.cache[i].input] = rt.with_room(it->second, gen.cache[i].axis, positions);
  }
  return cache;
}

/**
 * Greedy generation across the stages: every rank runs its stage of prefill and of each decode step
 * and keeps its layers' cache; the last rank picks the tokens and broadcasts them. Returns the tokens
 * on every rank; the logits (step_logits) only on the last.
 */
static std::vector<std::vector<int>> pipeline_generate(Runtime& rt, Pipeline& pp, const std::vector<std::vector<int>>& prompts, int steps, std::vector<std::string>* step_logits) {
  const GenerationDef& gen = generation();
  const std::string prefill = GRAPHS[gen.prefill]->name, decode = GRAPHS[gen.decode]->name;
  const long B = (long)prompts.size(), S = (long)prompts[0].size();
  std::vector<int> flat;
  const long positions = generation_positions(gen, prompts, steps, flat);
  std::map<std::string, DevTensor> given;
  if (pp.reads_input(prefill, gen.prefill_tokens)) given[gen.prefill_tokens] = upload_ids(rt, flat, B, S);
  auto res = pp.run(prefill, given, false);
  for (auto& kv : given) rt.free_tensor(kv.second);
  std::map<std::string, DevTensor> cache = caches_with_room(rt, gen, res, positions);
  std::vector<std::vector<int>> outs(B);
  int* next_dev;
  CK(cudaMalloc(&next_dev, std::max<long>(B, 1) * sizeof(int)));
  const char* logits_name = gen.prefill_logits;
  for (int step = 0; step < steps; ++step) {
    if (pp.rank == pp.last()) {
      DevTensor& logits = res.at(logits_name);
      const std::vector<int> next = argmax_last(rt, logits);
      CK(cudaMemcpyAsync(next_dev, next.data(), B * sizeof(int), cudaMemcpyHostToDevice, rt.stream));
      if (step_logits) {
        std::string all = to_bytes_f32(rt, logits);
        const long Sx = logits.shape[1], V = logits.shape[2];
        for (long b = 0; b < B; ++b) step_logits->push_back(all.substr(((b * Sx + Sx - 1) * V) * 4, V * 4));
      }
    }
    pp.broadcast_ints(next_dev, B, pp.last());
    std::vector<int> next(B);
    CK(cudaMemcpyAsync(next.data(), next_dev, B * sizeof(int), cudaMemcpyDeviceToHost, rt.stream));
    CK(cudaStreamSynchronize(rt.stream));
    for (long b = 0; b < B; ++b) outs[b].push_back(next[b]);
    for (auto& kv : res) rt.free_tensor(kv.second);
    res.clear();
    if (step + 1 == steps) break;
    std::map<std::string, DevTensor> in = cache;
    DevTensor nid;
    if (pp.reads_input(decode, gen.decode_tokens)) in[gen.decode_tokens] = nid = upload_ids(rt, next, B, 1);
    res = pp.run(decode, in, false);
    rt.free_tensor(nid);
    advance_cache(rt, gen.cache, gen.ncache, cache, res);
    logits_name = gen.decode_logits;
  }
  for (auto& kv : res) rt.free_tensor(kv.second);
  for (auto& kv : cache) rt.free_tensor(kv.second);
  CK(cudaFree(next_dev));
  return outs;
}

/** This stage's cache inputs of the decode graph at batch B and P positions (random values), with room for `room` positions. */
static std::map<std::string, DevTensor> random_caches(Runtime& rt, long B, long S, long P, long room) {
  const GenerationDef& gen = generation();
  const Plan& dp = rt.plan(GRAPHS[gen.decode]->name);
  const std::vector<long> sym = bench_symbols(rt, dp, gen.decode_tokens, B, S, P, false);
  std::map<std::string, DevTensor> cache;
  std::vector<long> shape(8);
  for (int c = 0; c < gen.ncache; ++c)
    for (int k = 0; k < dp.g->ninputs; ++k) {
      if (std::strcmp(dp.g->inputs[k].name, gen.cache[c].input)) continue;
      const int s = dp.input_slots[k];
      dp.shape(s, sym, shape.data());
      DevTensor t = random_tensor(rt, dp.slots[s].dtype, std::vector<long>(shape.begin(), shape.begin() + dp.slots[s].rank), 100 + c);
      cache[gen.cache[c].input] = rt.with_room(t, gen.cache[c].axis, room);
      CK(cudaFree(t.ptr));
    }
  return cache;
}

/**
 * bench across the stages: prefill B x S whole and in each of `chunk_counts` chunks of the sequence in flight
 * (the decode graph extending each stage's cache chunk by chunk), and decode steps of batch B with
 * a P-token cache. Each repeat starts from a barrier; its time is the last rank's (the whole
 * pipeline's latency, as the last stage finishes last). The last rank prints the JSON; every rank
 * reports its GPU memory.
 */
static void pipeline_bench(Runtime& rt, Pipeline& pp, const std::vector<std::pair<long, long>>& prefill, const std::vector<long>& chunk_counts, const std::vector<std::pair<long, long>>& decode, int repeats) {
  const GenerationDef& gen = generation();
  const std::string prefill_graph = GRAPHS[gen.prefill]->name, decode_graph = GRAPHS[gen.decode]->name;
  const bool lead = pp.rank == pp.last();
  pp.timing = true;
  // The pipeline's latency (the last rank's clock), and on stderr each rank's own compute time in it
  // (the stage's runs without the waits for their inputs: what the plan predicts per stage).
  auto timed = [&](const char* what, const std::function<void()>& fn) {
    std::vector<double> t, busy;
    for (int r = 0; r < repeats + 1; ++r) {
      pp.barrier();
      pp.busy_ms();
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      CK(cudaStreamSynchronize(rt.stream));
      CK(cudaStreamSynchronize(pp.link));
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      const double b = pp.busy_ms();
      if (r > 0) t.push_back(ms), busy.push_back(b);  // the first is a warm-up
    }
    std::fprintf(stderr, "stage %d: %s: computing %.3f ms of %.3f ms (medians)\n", pp.rank, what, median(busy), median(t));
    return median(t);
  };
  auto ids_for = [&](long B, long S, long salt) {
    std::vector<int> ids((size_t)(B * S));
    for (size_t j = 0; j < ids.size(); ++j) ids[j] = (int)((j * 7919 + salt) % pp.vocab);
    return ids;
  };
  auto drop = [&](std::map<std::string, DevTensor>& m) {
    for (auto& kv : m) rt.free_tensor(kv.second);
    m.clear();
  };
  if (lead) std::printf("{\n  \"model\": \"%s\",\n  \"stages\": %d,\n  \"prefill\": [", MODEL_NAME, pp.world);
  for (size_t i = 0; i < prefill.size(); ++i) {
    const long B = prefill[i].first, S = prefill[i].second;
    const std::vector<int> ids = ids_for(B, S, 0);
    // The last rank keeps logits of the last positions, whole and chunked, to compare them: the
    // whole prefill's last `keep` rows (the longest chunk, or fewer where the prefill graph outputs
    // fewer: a generation prefill's logits are its last position's), and each chunked run's last chunk.
    long keep = 0;
    for (long C : chunk_counts) {
      if (C < 2 || S % C) fail("bench: --chunks %ld does not divide the prefill length %ld into 2 or more chunks", C, S);
      keep = std::max(keep, S / C);
    }
    auto last_rows = [&](std::map<std::string, DevTensor>& r, const char* name, long& rows) {
      std::string into;
      if (!lead) return into;
      DevTensor& t = r.at(name);
      const std::string all = to_bytes_f32(rt, t);
      const long Sx = t.shape[1], V = t.shape[2];
      rows = std::min(rows, Sx);
      for (long b = 0; b < B; ++b) into += all.substr((size_t)((b * Sx + Sx - rows) * V) * 4, (size_t)(rows * V) * 4);
      return into;
    };
    std::string whole_logits;
    const std::string whole_what = "prefill " + std::to_string(B) + "x" + std::to_string(S) + " whole";
    const double whole = timed(whole_what.c_str(), [&] {
      std::map<std::string, DevTensor> given;
      if (pp.reads_input(prefill_graph, gen.prefill_tokens)) given[gen.prefill_tokens] = upload_ids(rt, ids, B, S);
      auto r = pp.run(prefill_graph, given, false);
      if (keep && whole_logits.empty()) whole_logits = last_rows(r, gen.prefill_logits, keep);
      drop(r);
      drop(given);
    });
    if (lead) std::printf("%s\n    {\"batch\": %ld, \"seq\": %ld, \"ms\": %.3f, \"tokens_per_s\": %.1f, \"chunked\": [", i ? "," : "", B, S, whole, B * S / (whole * 1e-3));
    for (size_t ci = 0; ci < chunk_counts.size(); ++ci) {
      const long C = chunk_counts[ci], L = S / C;
      std::string chunked_logits;
      const std::string what = "prefill " + std::to_string(B) + "x" + std::to_string(S) + " in " + std::to_string(C) + " chunks";
      const double chunked = timed(what.c_str(), [&] {
        std::map<std::string, DevTensor> cache = random_caches(rt, B, L, 0, S);
        for (long c = 0; c < C; ++c) {
          std::map<std::string, DevTensor> in = cache;
          DevTensor t;
          if (pp.reads_input(decode_graph, gen.decode_tokens)) {
            std::vector<int> part;
            for (long b = 0; b < B; ++b) part.insert(part.end(), ids.begin() + b * S + c * L, ids.begin() + b * S + (c + 1) * L);
            in[gen.decode_tokens] = t = upload_ids(rt, part, B, L);
          }
          auto r = pp.run(decode_graph, in, false);
          rt.free_tensor(t);
          long rows = L;
          if (c == C - 1 && chunked_logits.empty()) chunked_logits = last_rows(r, gen.decode_logits, rows);
          advance_cache(rt, gen.cache, gen.ncache, cache, r);
          drop(r);
        }
        drop(cache);
      });
      if (!lead) continue;
      // The last chunk's logits against the whole prefill's at the same positions (bf16 rounding
      // differs: the chunk's attention reads the cache, its GEMMs have fewer rows): the largest
      // difference, the largest logit, and the share of positions whose greedy token is the same,
      // over the last `n` positions (those both kept).
      double diff = 0, scale = 0;
      long same = 0;
      const long V = (long)(whole_logits.size() / 4 / (B * keep)), n = std::min(keep, L);
      for (long b = 0; b < B; ++b)
        for (long q = L - n; q < L; ++q) {
          const float* x = (const float*)whole_logits.data() + (b * keep + keep - L + q) * V;
          const float* y = (const float*)chunked_logits.data() + (b * L + q) * V;
          long ix = 0, iy = 0;
          for (long v = 0; v < V; ++v) {
            diff = std::max(diff, (double)std::fabs(x[v] - y[v]));
            scale = std::max(scale, (double)std::fabs(x[v]));
            if (x[v] > x[ix]) ix = v;
            if (y[v] > y[iy]) iy = v;
          }
          same += ix == iy;
        }
      std::printf("%s\n      {\"chunks\": %ld, \"ms\": %.3f, \"tokens_per_s\": %.1f, \"speedup\": %.3f, \"last_chunk_logits_max_abs_diff\": %.4g, \"logits_max_abs\": %.4g, \"last_chunk_same_argmax\": %.4f}",
                  ci ? "," : "", C, chunked, B * S / (chunked * 1e-3), whole / chunked, diff, scale, (double)same / (double)(B * n));
    }
    if (lead) std::printf("%s]}", chunk_counts.empty() ? "" : "\n    ");
  }
  if (lead) std::printf("\n  ],\n  \"decode\": [");
  for (size_t i = 0; i < decode.size(); ++i) {
    const long B = decode[i].first, P = decode[i].second;
    std::map<std::string, DevTensor> cache = random_caches(rt, B, 1, P, P + 1);
    const std::vector<int> ids = ids_for(B, 1, 7);
    DevTensor t = upload_ids(rt, ids, B, 1);
    const std::string what = "decode batch " + std::to_string(B) + ", cache " + std::to_string(P);
    const double ms = timed(what.c_str(), [&] {
      std::map<std::string, DevTensor> in = cache;
      if (pp.reads_input(decode_graph, gen.decode_tokens)) in[gen.decode_tokens] = t;
      // Each step appends its row in place at position P (the caches it returns are views of them).
      auto r = pp.run(decode_graph, in, false);
      drop(r);
    });
    rt.free_tensor(t);
    drop(cache);
    if (lead) std::printf("%s\n    {\"batch\": %ld, \"cache\": %ld, \"ms_per_step\": %.3f, \"tokens_per_s\": %.1f}", i ? "," : "", B, P, ms, B / (ms * 1e-3));
  }
  if (lead) std::printf("\n  ]\n}\n");
  std::fflush(stdout);
  size_t free_b = 0, total_b = 0;
  CK(cudaMemGetInfo(&free_b, &total_b));
  double weight_bytes = 0;
  for (auto& kv : rt.weights) weight_bytes += (double)kv.second.numel() * dtype_bytes(kv.second.dtype);
  std::fprintf(stderr, "stage %d: weights %.2f GB, GPU memory in use %.2f GB of %.2f GB\n", pp.rank, weight_bytes / 1e9, (total_b - free_b) / 1e9, total_b / 1e9);
}
