-- Callback types as real C libraries declare them (read from Debian's -dev headers, 2026-12):
-- each group's cdef holds what its types need, the types are spelled as the headers spell them
-- (typedef names, and the same types written out). Macros such as XMLCALL/SDLCALL/APIENTRY are
-- empty on Linux and written as the header expands them; where a header writes __cdecl we keep it.
return {
  { lib = "glibc", cdef = [[
    typedef int (*__compar_fn_t)(const void *, const void *);
    typedef void (*__sighandler_t)(int);
    typedef struct siginfo_t_ { int si_signo; int si_errno; int si_code; } siginfo_t;
    typedef enum { preorder, postorder, endorder, leaf } VISIT;
    typedef void (*__action_fn_t)(const void *__nodep, VISIT __value, int __level);
    typedef void (*__free_fn_t)(void *__nodep);
    struct stat; struct FTW; struct dirent; struct dl_phdr_info;
    typedef int (*__ftw_func_t)(const char *__filename, const struct stat *__status, int __flag);
    typedef int (*__nftw_func_t)(const char *__filename, const struct stat *__status, int __flag, struct FTW *__info);
    typedef ssize_t cookie_read_function_t (void *__cookie, char *__buf, size_t __nbytes);
    typedef ssize_t cookie_write_function_t (void *__cookie, const char *__buf, size_t __nbytes);
    typedef int cookie_seek_function_t (void *__cookie, int64_t *__pos, int __w);
    typedef int cookie_close_function_t (void *__cookie);
    typedef struct { long int __jmpbuf[8]; int __mask_was_saved; unsigned long __saved_mask[16]; } __jmp_buf_tag_t;
    typedef __jmp_buf_tag_t jmp_buf[1];
  ]], types = {
    "__compar_fn_t", "int (*)(const void *, const void *)",
    "__sighandler_t", "void (*)(int)",
    "void (*)(int, siginfo_t *, void *)",
    "__action_fn_t", "void (*)(const void *__nodep, VISIT __value, int __level)",
    "__free_fn_t",
    "__ftw_func_t", "__nftw_func_t",
    "int (*)(const struct dirent *)", "int (*)(const struct dirent **, const struct dirent **)",
    "int (*)(struct dl_phdr_info *info, size_t size, void *data)",
    "int (*)(const char *epath, int eerrno)",
    "cookie_read_function_t *", "cookie_write_function_t *", "cookie_seek_function_t *", "cookie_close_function_t *",
    "void *(*)(void *)", "void (*)(void)", "void (*)(int __status, void *__arg)",
    "void (*)(jmp_buf, int)",
  } },
  { lib = "sqlite3", cdef = [[
    typedef struct sqlite3 sqlite3; typedef struct sqlite3_context sqlite3_context;
    typedef struct sqlite3_value sqlite3_value; typedef struct sqlite3_vfs sqlite3_vfs;
    typedef struct sqlite3_file sqlite3_file; typedef long long int sqlite3_int64;
    typedef unsigned long long int sqlite3_uint64; typedef const char *sqlite3_filename;
    typedef int (*sqlite3_callback)(void*,int,char**, char**);
    typedef void (*sqlite3_syscall_ptr)(void);
    typedef void (*sqlite3_destructor_type)(void*);
    typedef struct Fts5ExtensionApi Fts5ExtensionApi; typedef struct Fts5Context Fts5Context;
    typedef void (*fts5_extension_function)(const Fts5ExtensionApi *pApi, Fts5Context *pFts,
      sqlite3_context *pCtx, int nVal, sqlite3_value **apVal);
  ]], types = {
    "sqlite3_callback", "int (*)(void*,int,char**, char**)",
    "sqlite3_syscall_ptr", "sqlite3_destructor_type", "fts5_extension_function",
    "int(*)(void*,int)", "int(*)(void*)", "void(*)(void*)",
    "void(*)(void *,int ,char const *,char const *,sqlite3_int64)",
    "void (*)(sqlite3_context*,int,sqlite3_value**)", "void (*)(sqlite3_context*)",
    "int(*)(void*,int,const void*,int,const void*)",
    "void(*)(void*,sqlite3*,int eTextRep,const char*)",
    "int(*)(void*,int,const char*,const char*,const char*,const char*)",
    "int(*)(unsigned,void*,void*,void*)",
    "int(*)(void *,sqlite3*,const char*,int)",
    "void (*(*)(sqlite3_vfs*,void*, const char *zSymbol))(void)",
    "void *(*)(sqlite3_vfs*, const char *zFilename)",
    "int (*)(sqlite3_vfs*, sqlite3_filename zName, sqlite3_file*, int flags, int *pOutFlags)",
    "int (*)(sqlite3_file*, void*, int iAmt, sqlite3_int64 iOfst)",
    "int (*)(sqlite3_file*, sqlite3_int64 *pSize)",
    "int (*)(sqlite3_vfs*, double*)", "int (*)(sqlite3_vfs*, int nByte, char *zOut)",
    "int (*)(sqlite3_vfs*, int microseconds)",
    "int (*)(sqlite3_vfs*, const char *zName, sqlite3_syscall_ptr)",
    "sqlite3_syscall_ptr (*)(sqlite3_vfs*, const char *zName)",
    "const char *(*)(sqlite3_vfs*, const char *zName)",
    "unsigned int(*)(void*,const char*,unsigned int,unsigned int,unsigned int)",
    "void(*)(void **apArg, int nArg)",
    "void(*)(void *pCtx, sqlite3 *db, int op, char const *zDb, char const *zName, sqlite3_int64 iKey1, sqlite3_int64 iKey2)",
    "int (*)(sqlite3_vfs*, sqlite3_int64*)",
  } },
  { lib = "zlib", cdef = [[
    typedef unsigned int uInt; typedef unsigned long uLong; typedef void *voidpf;
    typedef voidpf (*alloc_func)(voidpf opaque, uInt items, uInt size);
    typedef void (*free_func)(voidpf opaque, voidpf address);
    typedef unsigned (*in_func)(void *, const unsigned char * *);
    typedef int (*out_func)(void *, unsigned char *, unsigned);
  ]], types = {
    "alloc_func", "voidpf (*)(voidpf opaque, uInt items, uInt size)", "free_func",
    "in_func", "unsigned (*)(void *, const unsigned char * *)", "out_func",
  } },
  { lib = "libpng", cdef = [[
    typedef struct png_struct_def png_struct; typedef png_struct *png_structp;
    typedef struct png_info_def png_info; typedef png_info *png_infop;
    typedef const char *png_const_charp; typedef unsigned char png_byte; typedef png_byte *png_bytep;
    typedef unsigned int png_uint_32; typedef void *png_voidp; typedef size_t png_alloc_size_t;
    typedef struct png_row_info_struct { png_uint_32 width; size_t rowbytes; png_byte color_type; } png_row_info;
    typedef png_row_info *png_row_infop;
    typedef struct png_unknown_chunk_t { png_byte name[5]; png_byte *data; size_t size; png_byte location; } png_unknown_chunk;
    typedef png_unknown_chunk *png_unknown_chunkp;
    typedef void (*png_error_ptr)(png_structp, png_const_charp);
    typedef void (*png_rw_ptr)(png_structp, png_bytep, size_t);
    typedef void (*png_flush_ptr)(png_structp);
    typedef void (*png_read_status_ptr)(png_structp, png_uint_32, int);
    typedef void (*png_progressive_row_ptr)(png_structp, png_bytep, png_uint_32, int);
    typedef void (*png_user_transform_ptr)(png_structp, png_row_infop, png_bytep);
    typedef int (*png_user_chunk_ptr)(png_structp, png_unknown_chunkp);
    typedef struct { long int __jmpbuf[8]; int __mask_was_saved; unsigned long __saved_mask[16]; } png_jmp_tag;
    typedef png_jmp_tag png_jmp_buf[1];
    typedef void (*png_longjmp_ptr)(png_jmp_buf, int);
    typedef png_voidp (*png_malloc_ptr)(png_structp, png_alloc_size_t);
    typedef void (*png_free_ptr)(png_structp, png_voidp);
  ]], types = {
    "png_error_ptr", "void (*)(png_structp, png_const_charp)", "png_rw_ptr", "png_flush_ptr",
    "png_read_status_ptr", "void (*)(png_structp, png_infop)", "png_progressive_row_ptr",
    "png_user_transform_ptr", "png_user_chunk_ptr", "png_longjmp_ptr", "void (*)(png_jmp_buf, int)",
    "png_malloc_ptr", "png_free_ptr",
  } },
  { lib = "expat", cdef = [[
    typedef char XML_Char; typedef char XML_LChar; typedef unsigned char XML_Bool;
    struct XML_ParserStruct; typedef struct XML_ParserStruct *XML_Parser;
    enum XML_Content_Type { XML_CTYPE_EMPTY = 1, XML_CTYPE_ANY, XML_CTYPE_MIXED, XML_CTYPE_NAME, XML_CTYPE_CHOICE, XML_CTYPE_SEQ };
    enum XML_Content_Quant { XML_CQUANT_NONE, XML_CQUANT_OPT, XML_CQUANT_REP, XML_CQUANT_PLUS };
    typedef struct XML_cp XML_Content;
    struct XML_cp { enum XML_Content_Type type; enum XML_Content_Quant quant; XML_Char *name; unsigned int numchildren; XML_Content *children; };
    typedef void (*XML_ElementDeclHandler)(void *userData, const XML_Char *name, XML_Content *model);
    typedef void (*XML_AttlistDeclHandler)(void *userData, const XML_Char *elname, const XML_Char *attname,
      const XML_Char *att_type, const XML_Char *dflt, int isrequired);
    typedef void (*XML_XmlDeclHandler)(void *userData, const XML_Char *version, const XML_Char *encoding, int standalone);
    typedef void (*XML_StartElementHandler)(void *userData, const XML_Char *name, const XML_Char **atts);
    typedef void (*XML_EndElementHandler)(void *userData, const XML_Char *name);
    typedef void (*XML_CharacterDataHandler)(void *userData, const XML_Char *s, int len);
    typedef void (*XML_ProcessingInstructionHandler)(void *userData, const XML_Char *target, const XML_Char *data);
    typedef void (*XML_CommentHandler)(void *userData, const XML_Char *data);
    typedef void (*XML_StartCdataSectionHandler)(void *userData);
    typedef void (*XML_DefaultHandler)(void *userData, const XML_Char *s, int len);
    typedef void (*XML_StartDoctypeDeclHandler)(void *userData, const XML_Char *doctypeName,
      const XML_Char *sysid, const XML_Char *pubid, int has_internal_subset);
    typedef void (*XML_EntityDeclHandler)(void *userData, const XML_Char *entityName, int is_parameter_entity,
      const XML_Char *value, int value_length, const XML_Char *base, const XML_Char *systemId,
      const XML_Char *publicId, const XML_Char *notationName);
    typedef void (*XML_NotationDeclHandler)(void *userData, const XML_Char *notationName, const XML_Char *base,
      const XML_Char *systemId, const XML_Char *publicId);
    typedef void (*XML_StartNamespaceDeclHandler)(void *userData, const XML_Char *prefix, const XML_Char *uri);
    typedef int (*XML_NotStandaloneHandler)(void *userData);
    typedef int (*XML_ExternalEntityRefHandler)(XML_Parser parser, const XML_Char *context, const XML_Char *base,
      const XML_Char *systemId, const XML_Char *publicId);
    typedef void (*XML_SkippedEntityHandler)(void *userData, const XML_Char *entityName, int is_parameter_entity);
    typedef struct { int map[256]; void *data; int(*convert)(void *data, const char *s); void(*release)(void *data); } XML_Encoding;
    typedef int (*XML_UnknownEncodingHandler)(void *encodingHandlerData, const XML_Char *name, XML_Encoding *info);
  ]], types = {
    "XML_ElementDeclHandler", "XML_AttlistDeclHandler", "XML_XmlDeclHandler", "XML_StartElementHandler",
    "void (*)(void *userData, const XML_Char *name, const XML_Char **atts)",
    "XML_EndElementHandler", "XML_CharacterDataHandler", "XML_ProcessingInstructionHandler",
    "XML_CommentHandler", "XML_StartCdataSectionHandler", "XML_DefaultHandler", "XML_StartDoctypeDeclHandler",
    "XML_EntityDeclHandler", "XML_NotationDeclHandler", "XML_StartNamespaceDeclHandler",
    "XML_NotStandaloneHandler", "XML_ExternalEntityRefHandler", "XML_SkippedEntityHandler",
    "XML_UnknownEncodingHandler", "int (*)(void *encodingHandlerData, const XML_Char *name, XML_Encoding *info)",
    "int(__cdecl *)(void *data, const char *s)",
  } },
  { lib = "libuv", cdef = [[
    typedef struct uv_loop_s uv_loop_t; typedef struct uv_handle_s uv_handle_t; typedef struct uv_stream_s uv_stream_t;
    typedef struct uv_tcp_s uv_tcp_t; typedef struct uv_udp_s uv_udp_t; typedef struct uv_poll_s uv_poll_t;
    typedef struct uv_timer_s uv_timer_t; typedef struct uv_async_s uv_async_t; typedef struct uv_idle_s uv_idle_t;
    typedef struct uv_process_s uv_process_t; typedef struct uv_fs_event_s uv_fs_event_t;
    typedef struct uv_fs_poll_s uv_fs_poll_t; typedef struct uv_signal_s uv_signal_t;
    typedef struct uv_write_s uv_write_t; typedef struct uv_connect_s uv_connect_t; typedef struct uv_shutdown_s uv_shutdown_t;
    typedef struct uv_udp_send_s uv_udp_send_t; typedef struct uv_fs_s uv_fs_t; typedef struct uv_work_s uv_work_t;
    typedef struct uv_getaddrinfo_s uv_getaddrinfo_t; typedef struct uv_getnameinfo_s uv_getnameinfo_t;
    typedef struct uv_random_s uv_random_t;
    typedef struct { char *base; size_t len; } uv_buf_t;
    typedef struct { long tv_sec; long tv_nsec; } uv_timespec_t;
    typedef struct { uint64_t st_dev, st_mode; uv_timespec_t st_atim; } uv_stat_t;
    struct addrinfo; struct sockaddr;
    typedef void (*uv_alloc_cb)(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buf);
    typedef void (*uv_read_cb)(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
    typedef void (*uv_write_cb)(uv_write_t* req, int status);
    typedef void (*uv_connect_cb)(uv_connect_t* req, int status);
    typedef void (*uv_shutdown_cb)(uv_shutdown_t* req, int status);
    typedef void (*uv_connection_cb)(uv_stream_t* server, int status);
    typedef void (*uv_close_cb)(uv_handle_t* handle);
    typedef void (*uv_poll_cb)(uv_poll_t* handle, int status, int events);
    typedef void (*uv_timer_cb)(uv_timer_t* handle);
    typedef void (*uv_async_cb)(uv_async_t* handle);
    typedef void (*uv_idle_cb)(uv_idle_t* handle);
    typedef void (*uv_exit_cb)(uv_process_t*, int64_t exit_status, int term_signal);
    typedef void (*uv_walk_cb)(uv_handle_t* handle, void* arg);
    typedef void (*uv_fs_cb)(uv_fs_t* req);
    typedef void (*uv_work_cb)(uv_work_t* req);
    typedef void (*uv_after_work_cb)(uv_work_t* req, int status);
    typedef void (*uv_getaddrinfo_cb)(uv_getaddrinfo_t* req, int status, struct addrinfo* res);
    typedef void (*uv_getnameinfo_cb)(uv_getnameinfo_t* req, int status, const char* hostname, const char* service);
    typedef void (*uv_random_cb)(uv_random_t* req, int status, void* buf, size_t buflen);
    typedef void (*uv_fs_event_cb)(uv_fs_event_t* handle, const char* filename, int events, int status);
    typedef void (*uv_fs_poll_cb)(uv_fs_poll_t* handle, int status, const uv_stat_t* prev, const uv_stat_t* curr);
    typedef void (*uv_signal_cb)(uv_signal_t* handle, int signum);
    typedef void (*uv_udp_send_cb)(uv_udp_send_t* req, int status);
    typedef void (*uv_udp_recv_cb)(uv_udp_t* handle, ssize_t nread, const uv_buf_t* buf, const struct sockaddr* addr, unsigned flags);
    typedef void (*uv_thread_cb)(void* arg);
    typedef void* (*uv_malloc_func)(size_t size);
    typedef void* (*uv_realloc_func)(void* ptr, size_t size);
    typedef void* (*uv_calloc_func)(size_t count, size_t size);
    typedef void (*uv_free_func)(void* ptr);
  ]], types = {
    "uv_alloc_cb", "uv_read_cb", "void (*)(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf)",
    "uv_write_cb", "uv_connect_cb", "uv_shutdown_cb", "uv_connection_cb", "uv_close_cb", "uv_poll_cb",
    "uv_timer_cb", "uv_async_cb", "uv_idle_cb", "uv_exit_cb", "uv_walk_cb", "uv_fs_cb", "uv_work_cb",
    "uv_after_work_cb", "uv_getaddrinfo_cb", "uv_getnameinfo_cb", "uv_random_cb", "uv_fs_event_cb",
    "uv_fs_poll_cb", "void (*)(uv_fs_poll_t* handle, int status, const uv_stat_t* prev, const uv_stat_t* curr)",
    "uv_signal_cb", "uv_udp_send_cb", "uv_udp_recv_cb", "uv_thread_cb",
    "uv_malloc_func", "uv_realloc_func", "uv_calloc_func", "uv_free_func",
  } },
  { lib = "curl", cdef = [[
    typedef void CURL; typedef void CURLM; typedef int64_t curl_off_t; typedef int curl_socket_t;
    typedef enum { CURLSOCKTYPE_IPCXN, CURLSOCKTYPE_ACCEPT, CURLSOCKTYPE_LAST } curlsocktype;
    typedef enum { CURLINFO_TEXT = 0, CURLINFO_HEADER_IN, CURLINFO_HEADER_OUT, CURLINFO_DATA_IN, CURLINFO_DATA_OUT,
      CURLINFO_SSL_DATA_IN, CURLINFO_SSL_DATA_OUT, CURLINFO_END } curl_infotype;
    typedef enum { CURLIOE_OK, CURLIOE_UNKNOWNCMD, CURLIOE_FAILRESTART, CURLIOE_LAST } curlioerr;
    typedef enum { CURL_LOCK_DATA_NONE = 0, CURL_LOCK_DATA_SHARE, CURL_LOCK_DATA_COOKIE, CURL_LOCK_DATA_LAST } curl_lock_data;
    typedef enum { CURL_LOCK_ACCESS_NONE = 0, CURL_LOCK_ACCESS_SHARED = 1, CURL_LOCK_ACCESS_SINGLE = 2, CURL_LOCK_ACCESS_LAST } curl_lock_access;
    enum curl_khmatch { CURLKHMATCH_OK, CURLKHMATCH_MISMATCH, CURLKHMATCH_MISSING, CURLKHMATCH_LAST };
    enum curl_khtype { CURLKHTYPE_UNKNOWN, CURLKHTYPE_RSA1, CURLKHTYPE_RSA, CURLKHTYPE_DSS };
    struct curl_khkey { const char *key; size_t len; enum curl_khtype keytype; };
    typedef enum { CURLSTS_OK, CURLSTS_DONE, CURLSTS_FAIL } CURLSTScode;
    struct curl_hstsentry; struct curl_slist; struct curl_sockaddr;
    typedef size_t (*curl_write_callback)(char *buffer, size_t size, size_t nitems, void *outstream);
    typedef size_t (*curl_read_callback)(char *buffer, size_t size, size_t nitems, void *instream);
    typedef int (*curl_progress_callback)(void *clientp, double dltotal, double dlnow, double ultotal, double ulnow);
    typedef int (*curl_xferinfo_callback)(void *clientp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow);
    typedef int (*curl_seek_callback)(void *instream, curl_off_t offset, int origin);
    typedef int (*curl_sockopt_callback)(void *clientp, curl_socket_t curlfd, curlsocktype purpose);
    typedef curl_socket_t (*curl_opensocket_callback)(void *clientp, curlsocktype purpose, struct curl_sockaddr *address);
    typedef int (*curl_closesocket_callback)(void *clientp, curl_socket_t item);
    typedef int (*curl_debug_callback)(CURL *handle, curl_infotype type, char *data, size_t size, void *userptr);
    typedef curlioerr (*curl_ioctl_callback)(CURL *handle, int cmd, void *clientp);
    typedef void *(*curl_malloc_callback)(size_t size);
    typedef void (*curl_free_callback)(void *ptr);
    typedef void (*curl_lock_function)(CURL *handle, curl_lock_data data, curl_lock_access locktype, void *userptr);
    typedef void (*curl_unlock_function)(CURL *handle, curl_lock_data data, void *userptr);
    typedef int (*curl_socket_callback)(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp);
    typedef int (*curl_multi_timer_callback)(CURLM *multi, long timeout_ms, void *userp);
    typedef long (*curl_chunk_bgn_callback)(const void *transfer_info, void *ptr, int remains);
    typedef int (*curl_fnmatch_callback)(void *ptr, const char *pattern, const char *string);
    typedef int (*curl_sshkeycallback)(CURL *easy, const struct curl_khkey *knownkey, const struct curl_khkey *foundkey,
      enum curl_khmatch, void *clientp);
    typedef int (*curl_trailer_callback)(struct curl_slist **list, void *userdata);
    typedef int (*curl_resolver_start_callback)(void *resolver_state, void *reserved, void *userdata);
    typedef CURLSTScode (*curl_hstsread_callback)(CURL *easy, struct curl_hstsentry *e, void *userp);
    typedef int (*curl_prereq_callback)(void *clientp, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port, int conn_local_port);
  ]], types = {
    "curl_write_callback", "size_t (*)(char *buffer, size_t size, size_t nitems, void *outstream)",
    "curl_read_callback", "curl_progress_callback", "curl_xferinfo_callback", "curl_seek_callback",
    "curl_sockopt_callback", "int (*)(void *clientp, curl_socket_t curlfd, curlsocktype purpose)",
    "curl_opensocket_callback", "curl_closesocket_callback", "curl_debug_callback", "curl_ioctl_callback",
    "curlioerr (*)(CURL *handle, int cmd, void *clientp)",
    "curl_malloc_callback", "curl_free_callback", "curl_lock_function", "curl_unlock_function",
    "curl_socket_callback", "curl_multi_timer_callback", "curl_chunk_bgn_callback", "curl_fnmatch_callback",
    "curl_sshkeycallback", "curl_trailer_callback", "curl_resolver_start_callback", "curl_hstsread_callback",
    "curl_prereq_callback",
  } },
  { lib = "SDL2", cdef = [[
    typedef uint8_t Uint8; typedef uint16_t Uint16; typedef uint32_t Uint32; typedef int64_t Sint64;
    typedef Uint16 SDL_AudioFormat;
    typedef union SDL_Event { Uint32 type; Uint8 padding[56]; } SDL_Event;
    typedef struct SDL_Window SDL_Window; typedef struct SDL_Point { int x; int y; } SDL_Point;
    typedef enum { SDL_LOG_PRIORITY_VERBOSE = 1, SDL_LOG_PRIORITY_DEBUG, SDL_LOG_PRIORITY_INFO, SDL_LOG_PRIORITY_WARN,
      SDL_LOG_PRIORITY_ERROR, SDL_LOG_PRIORITY_CRITICAL, SDL_NUM_LOG_PRIORITIES } SDL_LogPriority;
    typedef enum { SDL_HITTEST_NORMAL, SDL_HITTEST_DRAGGABLE, SDL_HITTEST_RESIZE_TOPLEFT } SDL_HitTestResult;
    typedef enum { SDL_ASSERTION_RETRY, SDL_ASSERTION_BREAK, SDL_ASSERTION_ABORT, SDL_ASSERTION_IGNORE,
      SDL_ASSERTION_ALWAYS_IGNORE } SDL_AssertState;
    typedef struct SDL_AssertData { int always_ignore; unsigned int trigger_count; const char *condition; } SDL_AssertData;
    struct SDL_AudioCVT; struct SDL_RWops;
    typedef void (*SDL_AudioCallback)(void *userdata, Uint8 * stream, int len);
    typedef int (*SDL_EventFilter)(void *userdata, SDL_Event * event);
    typedef Uint32 (*SDL_TimerCallback)(Uint32 interval, void *param);
    typedef void (*SDL_HintCallback)(void *userdata, const char *name, const char *oldValue, const char *newValue);
    typedef int (*SDL_ThreadFunction)(void *data);
    typedef void (*SDL_LogOutputFunction)(void *userdata, int category, SDL_LogPriority priority, const char *message);
    typedef SDL_HitTestResult (*SDL_HitTest)(SDL_Window *win, const SDL_Point *area, void *data);
    typedef SDL_AssertState (*SDL_AssertionHandler)(const SDL_AssertData* data, void* userdata);
    typedef void *(*SDL_malloc_func)(size_t size);
    typedef void *(*SDL_calloc_func)(size_t nmemb, size_t size);
    typedef void *(*SDL_realloc_func)(void *mem, size_t size);
    typedef void (*SDL_free_func)(void *mem);
    typedef void (*SDL_AudioFilter)(struct SDL_AudioCVT * cvt, SDL_AudioFormat format);
    typedef int (*SDL_main_func)(int argc, char *argv[]);
  ]], types = {
    "SDL_AudioCallback", "void (__cdecl *)(void *userdata, Uint8 * stream, int len)", "SDL_EventFilter",
    "SDL_TimerCallback", "Uint32 (*)(Uint32 interval, void *param)", "SDL_HintCallback", "SDL_ThreadFunction",
    "SDL_LogOutputFunction", "SDL_HitTest", "SDL_AssertionHandler", "SDL_malloc_func", "SDL_calloc_func",
    "SDL_realloc_func", "SDL_free_func", "SDL_AudioFilter", "SDL_main_func",
    "Sint64 (*)(struct SDL_RWops * context)", "Sint64 (*)(struct SDL_RWops * context, Sint64 offset, int whence)",
    "size_t (*)(struct SDL_RWops * context, void *ptr, size_t size, size_t maxnum)",
    "int (*)(struct SDL_RWops * context)",
  } },
  { lib = "libevent", cdef = [[
    typedef int evutil_socket_t; typedef ssize_t ev_ssize_t;
    struct event_base; struct event; struct bufferevent; struct evbuffer; struct evconnlistener;
    struct sockaddr; struct evhttp_request; struct evutil_addrinfo;
    struct evbuffer_cb_info { size_t orig_size; size_t n_added; size_t n_deleted; };
    enum bufferevent_filter_result { BEV_OK = 0, BEV_NEED_MORE = 1, BEV_ERROR = 2 };
    enum bufferevent_flush_mode { BEV_NORMAL = 0, BEV_FLUSH = 1, BEV_FINISHED = 2 };
    typedef void (*event_callback_fn)(evutil_socket_t, short, void *);
    typedef void (*event_finalize_callback_fn)(struct event *, void *);
    typedef void (*bufferevent_data_cb)(struct bufferevent *bev, void *ctx);
    typedef void (*bufferevent_event_cb)(struct bufferevent *bev, short what, void *ctx);
    typedef enum bufferevent_filter_result (*bufferevent_filter_cb)(struct evbuffer *src, struct evbuffer *dst,
      ev_ssize_t dst_limit, enum bufferevent_flush_mode mode, void *ctx);
    typedef void (*evconnlistener_cb)(struct evconnlistener *, evutil_socket_t, struct sockaddr *, int socklen, void *);
    typedef void (*evconnlistener_errorcb)(struct evconnlistener *, void *);
    typedef void (*evbuffer_cb_func)(struct evbuffer *buffer, const struct evbuffer_cb_info *info, void *arg);
    typedef void (*evbuffer_ref_cleanup_cb)(const void *data, size_t datalen, void *extra);
    typedef void (*event_log_cb)(int severity, const char *msg);
    typedef void (*event_fatal_cb)(int err);
    typedef void (*evdns_callback_type) (int result, char type, int count, int ttl, void *addresses, void *arg);
    typedef void (*evdns_getaddrinfo_cb)(int result, struct evutil_addrinfo *res, void *arg);
  ]], types = {
    "event_callback_fn", "void (*)(evutil_socket_t, short, void *)", "event_finalize_callback_fn",
    "bufferevent_data_cb", "bufferevent_event_cb", "bufferevent_filter_cb", "evconnlistener_cb",
    "evconnlistener_errorcb", "evbuffer_cb_func", "evbuffer_ref_cleanup_cb", "event_log_cb", "event_fatal_cb",
    "evdns_callback_type", "evdns_getaddrinfo_cb", "void (*)(struct evhttp_request *, void *)",
  } },
  { lib = "OpenSSL", cdef = [[
    typedef struct ssl_st SSL; typedef struct x509_store_ctx_st X509_STORE_CTX;
    typedef struct crypto_ex_data_st CRYPTO_EX_DATA;
    typedef int pem_password_cb (char *buf, int size, int rwflag, void *userdata);
    typedef int (*SSL_verify_cb)(int preverify_ok, X509_STORE_CTX *x509_ctx);
    typedef void CRYPTO_EX_free (void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp);
  ]], types = {
    "pem_password_cb *", "int (*)(char *buf, int size, int rwflag, void *userdata)", "SSL_verify_cb",
    "void (*)(const SSL *ssl, int type, int val)",
    "void (*)(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl, void *arg)",
    "int (*)(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in, unsigned int inlen, void *arg)",
    "unsigned int (*)(SSL *ssl, const char *hint, char *identity, unsigned int max_identity_len, unsigned char *psk, unsigned int max_psk_len)",
    "CRYPTO_EX_free *",
  } },
  { lib = "GLFW/OpenGL", cdef = [[
    typedef struct GLFWwindow GLFWwindow; typedef struct GLFWmonitor GLFWmonitor;
    typedef void (*GLFWglproc)(void);
    typedef void (*GLFWerrorfun)(int error_code, const char* description);
    typedef void (*GLFWkeyfun)(GLFWwindow* window, int key, int scancode, int action, int mods);
    typedef void (*GLFWcursorposfun)(GLFWwindow* window, double xpos, double ypos);
    typedef void (*GLFWframebuffersizefun)(GLFWwindow* window, int width, int height);
    typedef void (*GLFWdropfun)(GLFWwindow* window, int path_count, const char* paths[]);
    typedef void (*GLFWcharfun)(GLFWwindow* window, unsigned int codepoint);
    typedef void (*GLFWmonitorfun)(GLFWmonitor* monitor, int event);
    typedef void (*GLFWjoystickfun)(int jid, int event);
    typedef void (*GLFWwindowcontentscalefun)(GLFWwindow* window, float xscale, float yscale);
    typedef unsigned int GLenum; typedef unsigned int GLuint; typedef int GLsizei; typedef char GLchar;
    typedef void (*GLDEBUGPROC)(GLenum source, GLenum type, GLuint id, GLenum severity, GLsizei length, const GLchar *message, const void *userParam);
  ]], types = {
    "GLFWglproc", "GLFWerrorfun", "GLFWkeyfun", "GLFWcursorposfun", "void (*)(GLFWwindow* window, double xoffset, double yoffset)",
    "GLFWframebuffersizefun", "GLFWdropfun", "GLFWcharfun", "GLFWmonitorfun", "GLFWjoystickfun",
    "GLFWwindowcontentscalefun", "GLDEBUGPROC",
  } },
  { lib = "PulseAudio/ALSA/OpenAL", cdef = [[
    typedef struct pa_stream pa_stream; typedef struct pa_context pa_context;
    typedef struct pa_sink_info { const char *name; uint32_t index; } pa_sink_info;
    typedef void (*pa_stream_request_cb_t)(pa_stream *p, size_t nbytes, void *userdata);
    typedef void (*pa_context_notify_cb_t)(pa_context *c, void *userdata);
    typedef void (*pa_context_success_cb_t)(pa_context *c, int success, void *userdata);
    typedef void (*pa_free_cb_t)(void *p);
    typedef void (*pa_sink_info_cb_t)(pa_context *c, const pa_sink_info *i, int eol, void *userdata);
    typedef struct _snd_async_handler snd_async_handler_t;
    typedef void (*snd_async_callback_t)(snd_async_handler_t *handler);
    typedef struct ALCdevice ALCdevice; typedef char ALCboolean; typedef int ALCenum;
    typedef ALCboolean (*LPALCCLOSEDEVICE)(ALCdevice *device);
    typedef ALCenum (*LPALCGETERROR)(ALCdevice *device);
  ]], types = {
    "pa_stream_request_cb_t", "pa_context_notify_cb_t", "pa_context_success_cb_t", "pa_free_cb_t",
    "pa_sink_info_cb_t", "snd_async_callback_t", "LPALCCLOSEDEVICE", "LPALCGETERROR",
  } },
  { lib = "libxml2/yaml/readline/gnutls", cdef = [[
    typedef unsigned char xmlChar; typedef struct _xmlError xmlError;
    typedef int (*xmlInputReadCallback) (void * context, char * buffer, int len);
    typedef int (*xmlInputCloseCallback) (void * context);
    typedef int (*xmlOutputWriteCallback) (void * context, const char * buffer, int len);
    typedef int (*xmlInputMatchCallback) (char const *filename);
    typedef void (*xmlStructuredErrorFunc) (void *userData, const xmlError *error);
    typedef void (*startElementSAXFunc) (void *ctx, const xmlChar *name, const xmlChar **atts);
    typedef void (*xmlHashScanner)(void *payload, void *data, const xmlChar *name);
    typedef void (*xmlFreeFunc)(void *mem);
    typedef void *(*xmlMallocFunc)(size_t size);
    typedef char *(*xmlStrdupFunc)(const char *str);
    typedef int yaml_read_handler_t(void *data, unsigned char *buffer, size_t size, size_t *size_read);
    typedef int yaml_write_handler_t(void *data, unsigned char *buffer, size_t size);
    typedef int rl_command_func_t (int, int);
    typedef char *rl_compentry_func_t (const char *, int);
    typedef char **rl_completion_func_t (const char *, int, int);
    typedef int rl_hook_func_t (void);
    typedef void rl_vcpfunc_t (char *);
    typedef void *gnutls_transport_ptr_t;
    typedef ssize_t (*gnutls_pull_func) (gnutls_transport_ptr_t, void *, size_t);
    typedef ssize_t (*gnutls_push_func) (gnutls_transport_ptr_t, const void *, size_t);
    typedef int (*gnutls_pull_timeout_func) (gnutls_transport_ptr_t, unsigned int ms);
    typedef void (*gnutls_log_func) (int, const char *);
  ]], types = {
    "xmlInputReadCallback", "xmlInputCloseCallback", "xmlOutputWriteCallback", "xmlInputMatchCallback",
    "xmlStructuredErrorFunc", "startElementSAXFunc", "xmlHashScanner", "xmlFreeFunc", "xmlMallocFunc", "xmlStrdupFunc",
    "yaml_read_handler_t *", "yaml_write_handler_t *",
    "rl_command_func_t *", "rl_compentry_func_t *", "rl_completion_func_t *", "rl_hook_func_t *", "rl_vcpfunc_t *",
    "gnutls_pull_func", "gnutls_push_func", "gnutls_pull_timeout_func", "gnutls_log_func",
  } },
  { lib = "bzip2/lzma/jpeg/freetype/Lua", cdef = [[
    struct jpeg_common_struct; struct jpeg_decompress_struct;
    typedef struct jpeg_common_struct * j_common_ptr; typedef struct jpeg_decompress_struct * j_decompress_ptr;
    typedef int boolean;
    typedef struct FT_MemoryRec_ *FT_Memory; typedef long FT_Pos;
    typedef struct FT_Vector_ { FT_Pos x; FT_Pos y; } FT_Vector;
    typedef void* (*FT_Alloc_Func)(FT_Memory memory, long size);
    typedef void (*FT_Free_Func)(FT_Memory memory, void* block);
    typedef void* (*FT_Realloc_Func)(FT_Memory memory, long cur_size, long new_size, void* block);
    typedef int (*FT_Outline_MoveToFunc)(const FT_Vector* to, void* user);
    typedef int (*FT_Outline_ConicToFunc)(const FT_Vector* control, const FT_Vector* to, void* user);
    typedef int (*FT_Outline_CubicToFunc)(const FT_Vector* control1, const FT_Vector* control2, const FT_Vector* to, void* user);
    typedef struct lua_State lua_State; typedef struct lua_Debug lua_Debug;
    typedef int (*lua_CFunction) (lua_State *L);
    typedef const char * (*lua_Reader) (lua_State *L, void *ud, size_t *sz);
    typedef int (*lua_Writer) (lua_State *L, const void* p, size_t sz, void* ud);
    typedef void * (*lua_Alloc) (void *ud, void *ptr, size_t osize, size_t nsize);
    typedef void (*lua_Hook) (lua_State *L, lua_Debug *ar);
  ]], types = {
    "void *(*)(void *,int,int)", "void (*)(void *,void *)",
    "void *(*)(void *opaque, size_t nmemb, size_t size)",
    "void (*)(j_common_ptr cinfo)", "void (*)(j_common_ptr cinfo, int msg_level)",
    "boolean (*)(j_decompress_ptr cinfo)", "void (*)(j_decompress_ptr cinfo, long num_bytes)",
    "FT_Alloc_Func", "FT_Free_Func", "FT_Realloc_Func", "FT_Outline_MoveToFunc", "FT_Outline_ConicToFunc",
    "FT_Outline_CubicToFunc",
    "lua_CFunction", "lua_Reader", "lua_Writer", "lua_Alloc", "lua_Hook",
    "int (*)(void *opaque, uint8_t *buf, int buf_size)", "int64_t (*)(void *opaque, int64_t offset, int whence)",
  } },
  -- Types every kind of value crosses: floats, bools, small integers, const results, more than
  -- six integer and eight float arguments (the stack), qualifiers everywhere.
  { lib = "scalars", cdef = [[
    typedef float vec_fn(float, double, float, double, float, double, float, double, float, double);
  ]], types = {
    "float (*)(float)", "double (*)(double, double)", "bool (*)(bool)", "_Bool (*)(void *, _Bool)",
    "signed char (*)(signed char)", "unsigned char (*)(unsigned char)", "short (*)(short, unsigned short)",
    "unsigned short (*)(void)", "const short (*)(void)", "const void (*)(void)", "volatile int (*)(const volatile int)",
    "char *const (*)(const char *const)", "uint64_t (*)(uint64_t, int64_t)", "long long (*)(long long)",
    "unsigned long (*)(unsigned long)", "vec_fn *",
    "int64_t (*)(int, int, int, int, int, int, int64_t, int8_t, uint16_t, int64_t)",
    "double (*)(double, double, double, double, double, double, double, double, double, float, double)",
  } },
}
